"""Greedy sampling under a JSON-schema grammar, with the grammar checked lazily.

The grammar sampler tests every one of the ~49,000 candidate tokens against the grammar, which
costs more than the model's forward pass for a small model (measured 11-22 ms against 8-12 ms of
CPU per token on 2 cores). The penalised argmax is tested alone first; only when the grammar
refuses it is the grammar applied to every candidate. Greedy picks the best allowed token either
way, so the reply is the same token for token.
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llama_cpp import Llama


class GreedyGrammar:
    """Greedy sampling under a grammar that tests the grammar on the chosen token first.

    `chain` is the request's chain without the grammar (penalties, greedy). The sequential chain
    applies penalties, grammar, greedy; penalties and the grammar's masking commute (a masked logit
    stays -inf under any penalty), so masking first and then running `chain` picks the same token.
    """

    def __init__(self, llama: Llama, chain: Any, grammar: Any) -> None:
        import llama_cpp
        import numpy as np

        self._lib = llama_cpp
        self._np = np
        self.chain = chain
        self.grammar = llama_cpp.llama_sampler_init_grammar(
            llama._model.vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
        )
        n_vocab = llama.n_vocab()
        self._ids = np.arange(n_vocab, dtype=np.int32)
        self._cand = np.zeros(
            n_vocab, dtype=np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
        )
        self._one = llama_cpp.llama_token_data()
        self.full_masks = 0  # how often the grammar refused the argmax (for tests, benchmarks)
        self.samples = 0

    def _array(self, data: Any, size: int) -> Any:
        lib = self._lib
        return lib.llama_token_data_array(
            data=ctypes.cast(data, lib.llama_token_data_p), size=size, selected=-1, sorted=False
        )

    def _fill(self, logits: Any) -> Any:
        cand = self._cand
        cand["id"] = self._ids
        cand["logit"] = logits
        cand["p"] = 0.0
        return self._array(cand.ctypes.data, len(cand))

    def sample(self, ctx: Any, index: int) -> int:
        lib, np = self._lib, self._np
        ptr = lib.llama_get_logits_ith(ctx.ctx, index)
        logits = np.ctypeslib.as_array(ptr, shape=(len(self._cand),))
        arr = self._fill(logits)
        lib.llama_sampler_apply(self.chain.sampler, ctypes.byref(arr))
        token = int(self._cand["id"][arr.selected])
        one: Any = self._one
        one.id, one.logit, one.p = token, float(self._cand["logit"][arr.selected]), 0.0
        single = self._array(ctypes.addressof(one), 1)
        lib.llama_sampler_apply(self.grammar, ctypes.byref(single))
        self.samples += 1
        if one.logit == float("-inf"):
            self.full_masks += 1
            arr = self._fill(logits)
            lib.llama_sampler_apply(self.grammar, ctypes.byref(arr))
            lib.llama_sampler_apply(self.chain.sampler, ctypes.byref(arr))
            token = int(self._cand["id"][arr.selected])
        lib.llama_sampler_accept(self.chain.sampler, token)
        lib.llama_sampler_accept(self.grammar, token)
        return token

    def close(self) -> None:
        self.chain.close()
        if self.grammar is not None:
            self._lib.llama_sampler_free(self.grammar)
            self.grammar = None
