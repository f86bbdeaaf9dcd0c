"""log p(target) computed where the logits are, through llama.cpp's backend sampling API.

The host path copies every wanted logits row (n_vocab floats) out of llama.cpp and log-softmaxes it
in numpy. Here a custom backend sampler adds a few ggml operations to llama.cpp's own graph instead:
over the whole matrix of output rows at once, the target's logit, the row maximum and
log(sum(exp(row - max))), so one float per row leaves the device.

How it plugs in (llama.cpp's sampling API, which llama-cpp-python binds as plain ctypes):
- every sequence id gets a sampler chain holding one custom sampler whose callbacks are
  `DeviceReducer`'s; a sequence without a backend sampler would make llama.cpp copy the raw logits
  again;
- llama.cpp calls `backend_apply` once per output row with a 1-D view of that row into its
  padded logits matrix. The first call of a graph builds the reduction over the view's source (all
  rows: ggml ops are per row, so a row's value does not depend on the others), and hands back the
  result vector as that row's "sampled logits" (llama.cpp copies up to n_vocab floats per row);
  the other rows hand back nothing, so nothing else is copied;
- the targets are a graph input, filled in `backend_set_input` before every compute (llama.cpp
  reuses a graph of the same shape without calling `backend_apply` again).
This needs one micro-batch per decode (n_ubatch >= the decode's tokens): the targets are given in
output order for the whole decode. With a unified KV cache llama.cpp keeps the batch's order.

ggml's functions are reached through the libggml that llama-cpp-python loads (`llama_cpp._ggml`):
no compiled shim. A llama.cpp that lacks any of them makes `available()` false and the engine
keeps to the host path.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
import numpy.typing as npt

_GGML_TYPE_I32 = 26
# ggml.h: GGML_MAX_DIMS 4, GGML_MAX_OP_PARAMS 64, GGML_MAX_SRC 10; only the fields up to view_offs
# are read.
_MAX_DIMS = 4
_MAX_SRC = 10


class _TensorHead(ctypes.Structure):
    _fields_ = (
        ("type", ctypes.c_int),
        ("buffer", ctypes.c_void_p),
        ("ne", ctypes.c_int64 * _MAX_DIMS),
        ("nb", ctypes.c_size_t * _MAX_DIMS),
        ("op", ctypes.c_int),
        ("op_params", ctypes.c_int32 * 16),
        ("flags", ctypes.c_int32),
        ("src", ctypes.c_void_p * _MAX_SRC),
        ("view_src", ctypes.c_void_p),
        ("view_offs", ctypes.c_size_t),
    )


_P = ctypes.c_void_p
_I64 = ctypes.c_int64
# name: (argument types, result type)
_SIGNATURES: dict[str, tuple[list[Any], Any]] = {
    "ggml_new_tensor_1d": ([_P, ctypes.c_int, _I64], _P),
    "ggml_set_input": ([_P], None),
    "ggml_set_name": ([_P, ctypes.c_char_p], _P),
    "ggml_reshape_2d": ([_P, _P, _I64, _I64], _P),
    "ggml_reshape_3d": ([_P, _P, _I64, _I64, _I64], _P),
    "ggml_view_1d": ([_P, _P, _I64, ctypes.c_size_t], _P),
    "ggml_get_rows": ([_P, _P, _P], _P),
    "ggml_argmax": ([_P, _P], _P),
    "ggml_sub": ([_P, _P, _P], _P),
    "ggml_exp_inplace": ([_P, _P], _P),
    "ggml_sum_rows": ([_P, _P], _P),
    "ggml_log": ([_P, _P], _P),
    "ggml_backend_tensor_set": ([_P, _P, ctypes.c_size_t, ctypes.c_size_t], None),
}
_ggml: dict[str, Any] = {}


def _bind() -> dict[str, Any]:
    """The ggml functions the reduction uses, bound once; empty if any is missing."""
    if _ggml:
        return _ggml
    try:
        from llama_cpp import _ggml as loaded
    except ImportError:
        return {}
    lib = loaded.libggml
    found: dict[str, Any] = {}
    for name, (args, result) in _SIGNATURES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            return {}
        fn.argtypes = args
        fn.restype = result
        found[name] = fn
    _ggml.update(found)
    return _ggml


def gpu_free_bytes() -> int | None:
    """The least free memory over the GPU devices ggml sees, or None (no GPU, or not bound)."""
    try:
        from llama_cpp import _ggml as loaded

        lib = loaded.libggml
        count, get, kind, memory = (
            lib.ggml_backend_dev_count,
            lib.ggml_backend_dev_get,
            lib.ggml_backend_dev_type,
            lib.ggml_backend_dev_memory,
        )
    except (ImportError, AttributeError):
        return None
    count.restype = ctypes.c_size_t
    get.argtypes, get.restype = [ctypes.c_size_t], ctypes.c_void_p
    kind.argtypes, kind.restype = [ctypes.c_void_p], ctypes.c_int
    memory.argtypes = [
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_size_t),
        ctypes.POINTER(ctypes.c_size_t),
    ]
    memory.restype = None
    frees = []
    for i in range(count()):
        dev = get(i)
        if kind(dev) in (1, 2):  # GGML_BACKEND_DEVICE_TYPE_GPU, _IGPU
            free, total = ctypes.c_size_t(), ctypes.c_size_t()
            memory(dev, ctypes.byref(free), ctypes.byref(total))
            frees.append(free.value)
    return min(frees) if frees else None


def available() -> bool:
    """Whether this llama-cpp-python binds the sampling API and ggml functions the path needs."""
    import llama_cpp as llama

    needed = ("llama_set_sampler", "llama_sampler_init", "llama_get_sampled_logits_ith")
    return all(hasattr(llama, name) for name in needed) and bool(_bind())


class DeviceReducer:
    """The samplers of one context, and the state shared between llama.cpp's callbacks."""

    def __init__(self, llama: Any, ctx: Any, n_seq: int) -> None:
        self._llama = llama
        self._ctx = ctx
        self._g = _bind()
        self.targets: npt.NDArray[np.int32] = np.zeros(1, dtype=np.int32)
        self.carriers: list[tuple[int, int, int]] = []  # (output row, first value, count)
        self._out: int | None = None  # the result vector of the graph being built
        self._source: int | None = None
        self._target_input: int | None = None
        self._rows = 0  # rows of the current graph, padding row included
        self._placed = 0
        self._complete = False
        self._seen: set[int] = set()
        self._fed = False
        self.errors: list[str] = []
        self._iface = self._make_iface(llama)
        self._chains: list[Any] = []
        params = llama.llama_sampler_chain_default_params()
        for seq in range(n_seq):
            chain = llama.llama_sampler_chain_init(params)
            llama.llama_sampler_chain_add(
                chain, llama.llama_sampler_init(ctypes.byref(self._iface), None)
            )
            self._chains.append(chain)
            if not llama.llama_set_sampler(ctx, seq, chain):
                self.close()
                raise RuntimeError(f"llama.cpp refused the backend sampler for sequence {seq}")

    def _make_iface(self, llama: Any) -> Any:
        # The callbacks are kept on self: ctypes frees a callback whose object is collected.
        self._callbacks = (
            llama.llama_sampler_i_name(lambda _s: b"srt-logprob"),
            llama.llama_sampler_i_apply(lambda _s, _cur: None),
            llama.llama_sampler_i_backend_init(lambda _s, _buft, _n: True),
            llama.llama_sampler_i_backend_apply(self._apply),
            llama.llama_sampler_i_backend_set_input(self._set_input),
            llama.llama_sampler_i_backend_reset(self._reset),
        )
        name, apply, init, backend_apply, set_input, reset = self._callbacks
        iface = llama.llama_sampler_i()
        iface.name = name
        iface.apply = apply
        iface.backend_init = init
        iface.backend_apply = backend_apply
        iface.backend_set_input = set_input
        iface.backend_reset = reset
        return iface

    # ------------------------------------------------------------------ callbacks (llama.cpp's thread)

    def _reset(self, _smpl: Any) -> None:
        self._out = None
        self._source = None
        self._complete = False

    def _apply(self, _smpl: Any, ctx: int, _gf: int, data: Any) -> None:
        # Called once per output row (thousands per decode on a GPU): once the result is placed,
        # every other row only needs to hand back nothing.
        if self._complete:
            data[0].logits = None
            return
        try:
            self._build(ctx, data[0])
        except BaseException as exc:  # an exception cannot cross into C: keep it for the caller
            self.errors.append(f"backend_apply: {exc!r}")

    def _build(self, ctx: int, data: Any) -> None:
        g = self._g
        row_view = data.logits
        head = _TensorHead.from_address(row_view)
        if not head.view_src:
            # llama.cpp's probe (a lone row, to count graph nodes): the same ops on one row.
            n = head.ne[0]
            target = g["ggml_new_tensor_1d"](ctx, _GGML_TYPE_I32, 1)
            data.logits = self._reduce(ctx, row_view, n, 1, target)
            return
        source = head.view_src
        matrix = _TensorHead.from_address(source)
        row = head.view_offs // matrix.nb[1]
        if self._source == source and row in self._seen:
            # A sequence with no output here is handed row 0 again; nothing of it is copied.
            data.logits = None
            return
        if self._source != source:
            n_vocab, rows = matrix.ne[0], matrix.ne[1]
            target = g["ggml_new_tensor_1d"](ctx, _GGML_TYPE_I32, rows)
            g["ggml_set_name"](target, b"srt_targets")
            g["ggml_set_input"](target)
            self._out = self._reduce(ctx, source, n_vocab, rows, target)
            self._source = source
            self._target_input = target
            self._rows = rows
            self._placed = 0
            self._seen = set()
            self.carriers = []
        self._seen.add(row)
        # llama.cpp copies at most n_vocab floats per row: the result rides on as few rows as that
        # allows, the first rows asked for; every other row returns nothing and costs no copy.
        n_vocab = matrix.ne[0]
        if self._placed < self._rows:
            count = min(n_vocab, self._rows - self._placed)
            data.logits = g["ggml_view_1d"](ctx, self._out, count, 4 * self._placed)
            self.carriers.append((row, self._placed, count))
            self._placed += count
            self._complete = self._placed >= self._rows
        else:
            data.logits = None

    def _reduce(self, ctx: int, logits: int, n_vocab: int, rows: int, target: int) -> int:
        """log softmax(logits[:, r])[target[r]] for every row r, as a vector of `rows` floats."""
        g = self._g
        cube = g["ggml_reshape_3d"](ctx, logits, 1, n_vocab, rows)
        picked = g["ggml_get_rows"](ctx, cube, g["ggml_reshape_2d"](ctx, target, 1, rows))
        top_index = g["ggml_argmax"](ctx, g["ggml_reshape_2d"](ctx, logits, n_vocab, rows))
        top = g["ggml_get_rows"](ctx, cube, g["ggml_reshape_2d"](ctx, top_index, 1, rows))
        top = g["ggml_reshape_2d"](ctx, top, 1, rows)
        shifted = g["ggml_sub"](ctx, g["ggml_reshape_2d"](ctx, logits, n_vocab, rows), top)
        log_sum = g["ggml_log"](ctx, g["ggml_sum_rows"](ctx, g["ggml_exp_inplace"](ctx, shifted)))
        picked = g["ggml_sub"](ctx, g["ggml_reshape_2d"](ctx, picked, 1, rows), top)
        out = g["ggml_sub"](ctx, picked, log_sum)
        g["ggml_set_name"](out, b"srt_logprob")
        return int(out)

    def _set_input(self, _smpl: Any) -> None:
        # Called once per sequence with outputs; the targets are the decode's, set once.
        if self._fed or self._target_input is None:
            return
        try:
            n = self._rows
            values = np.zeros(n, dtype=np.int32)
            k = min(n, len(self.targets))
            values[:k] = self.targets[:k]
            self._g["ggml_backend_tensor_set"](self._target_input, values.ctypes.data, 0, 4 * n)
            self._fed = True
        except BaseException as exc:
            self.errors.append(f"backend_set_input: {exc!r}")

    # ------------------------------------------------------------------ engine side

    def prepare(self, targets: npt.NDArray[np.int32]) -> None:
        """The target token of each output row of the next decode, in output order."""
        self.targets = targets
        self._fed = False
        self.errors.clear()

    def read(self, out_batch_index: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """log p(target) of every output row of the last decode (output order)."""
        if self.errors:
            raise RuntimeError("; ".join(self.errors))
        if not self._fed:
            raise RuntimeError("the backend sampler was not given this decode's targets")
        llama = self._llama
        n = len(out_batch_index)
        if n + 1 != self._rows:
            raise RuntimeError(
                f"the decode has {n} output rows, the sampling graph {self._rows - 1}"
            )
        values = np.empty(self._rows, dtype=np.float64)
        for row, first, count in self.carriers:
            ptr = llama.llama_get_sampled_logits_ith(self._ctx, int(out_batch_index[row]))
            got = llama.llama_get_sampled_logits_count_ith(self._ctx, int(out_batch_index[row]))
            if not ptr or got != count:
                raise RuntimeError(f"llama.cpp has no sampled values for output row {row}")
            values[first : first + count] = np.ctypeslib.as_array(ptr, shape=(count,))
        return values[:n]

    def close(self) -> None:
        """Detach and free the samplers (the context does not own them)."""
        llama = self._llama
        for seq, chain in enumerate(self._chains):
            if self._ctx:
                llama.llama_set_sampler(self._ctx, seq, None)
            llama.llama_sampler_free(chain)
        self._chains = []
