"""Several replies at once from one llama.cpp model: continuous batching over decode lanes.

The embedded teacher's replies are a few hundred tokens each. A `BatchedDecoder` keeps several
requests in flight. They are spread over *lanes*: a lane is one llama.cpp context driven
by a thread of its own, holding a few sequences. Each request owns a sequence of a lane and its
own KV stream (n_ctx per sequence, `kv_unified` off); its prompt is evaluated on its own (after
the prefix that the stream's previous prompt shares with it, as llama-cpp-python's own prompt
cache does), and then every running sequence of the lane adds one token per `llama_decode` call.
A finished sequence frees its stream at once and the next queued request takes it.

Why lanes (measured on 2 cores, SmolLM2-135M, `scripts/bench_teacher.py --embedded`): one token
of a small model is about 700 tiny graph nodes. Split over two threads, every node ends in a
barrier, and with OpenMP's passive waits (which the CLI sets so the student and the teacher can
share the cores) a token took 22 ms on 2 threads against 9 ms on one. A second thread helps only
when there is enough work per node: prompts (hundreds of tokens per decode) or a large model.
So on a CPU a lane decodes with one thread, prompts use all of the lane's share of the cores,
and the cores are filled by running one lane per core side by side (ctypes lets go of the GIL
during `llama_decode`). On a GPU there is one lane: the device batches better than lanes would.

Each sequence samples with its own sampler chain, built by llama-cpp-python's `Llama._init_sampler`
(a private method of the pinned 0.3.36) with the arguments its chat completion would pass, so the
penalties, the JSON-schema grammar, greedy or seeded sampling are the sequential path's own
(`_init_sampler` reads the shared Llama's seed, so lanes build samplers under one lock). Stop
rules are create_completion's: an end-of-generation token, a stop string of the chat template,
max_tokens (cut so that prompt + reply fit n_ctx). Greedy decoding under a grammar checks the
grammar lazily (greedy_grammar.py).

Determinism: on CPU, a sequence's logits do not depend on what else is in the batch, on its lane
or on the thread count (every row of a matrix product is its own dot product, computed whole by
one thread, and each sequence attends only to its own stream), so at temperature 0 the replies
equal the sequential ones token for token; tests/test_teacher_batched.py checks this against
create_chat_completion and across concurrency 1 and 4. On a GPU, cuBLAS picks kernels by batch
size, so replies may differ in the last bits of the logits and then in a token.

Asyncio callers wait on futures; each lane's llama.cpp calls stay in that lane's thread.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import json
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llama_cpp import Llama

# llama-cpp-python's defaults for what a chat completion request leaves out.
TOP_K, TOP_P, MIN_P, TYPICAL_P = 40, 0.95, 0.05, 1.0
N_BATCH = 512  # Llama's default n_batch/n_ubatch: prompts are evaluated in chunks of this size
# Below this many parameters a token is too little work to split over threads (see above).
SMALL_MODEL_PARAMS = 1_000_000_000


@dataclass
class Request:
    """One completion: prompt tokens, sampling settings, a time limit."""

    tokens: list[int]
    max_tokens: int
    temperature: float
    seed: int
    repeat_penalty: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    schema: dict[str, Any] | None = None
    stop: list[str] = field(default_factory=list)
    timeout: float = 600.0
    max_bytes: int | None = None  # the reply is cut off past this many bytes (finish too_long)
    cancelled: threading.Event = field(default_factory=threading.Event)
    future: concurrent.futures.Future[Completion] = field(default_factory=concurrent.futures.Future)


@dataclass
class Completion:
    """A finished request: `finish` is stop, length, too_long (max_bytes), timeout or error."""

    text: str
    n_tokens: int
    finish: str
    started_at: datetime  # when it left the queue
    elapsed_ms: float
    error: str | None = None


@dataclass
class _Seq:
    request: Request
    slot: int
    sampler: Any
    started_at: datetime
    began: float
    deadline: float
    max_tokens: int
    stop: list[bytes]
    n_past: int = 0
    pending: int = -1  # sampled, not yet decoded
    out: list[int] = field(default_factory=list)
    held: int = 0  # bytes of an unfinished UTF-8 character at the end
    n_bytes: int = 0  # bytes of the reply so far
    reason: str = ""  # why it finished


@dataclass(frozen=True)
class LanePlan:
    """How a decoder spreads its sequences: `sizes[i]` sequences in lane i, each lane decoding
    with `decode_threads` threads and evaluating prompts with `prompt_threads`."""

    sizes: tuple[int, ...]
    decode_threads: int
    prompt_threads: int


def plan_lanes(n_seq: int, threads: int, offloaded: bool, n_params: int) -> LanePlan:
    """One lane per core on a CPU (up to one per sequence), one lane on a GPU."""
    lanes = 1 if offloaded else max(1, min(n_seq, threads))
    base, extra = divmod(n_seq, lanes)
    sizes = tuple(base + (i < extra) for i in range(lanes))
    share = max(1, threads // lanes)
    decode = share if offloaded or n_params >= SMALL_MODEL_PARAMS else 1
    return LanePlan(sizes=sizes, decode_threads=decode, prompt_threads=share)


class BatchedDecoder:
    """Runs completions on `llama`'s model, as many at once as `plan`'s lanes hold sequences."""

    def __init__(self, llama: Llama, n_ctx_seq: int, plan: LanePlan) -> None:
        self.llama = llama
        self.n_ctx_seq = n_ctx_seq
        self.plan = plan
        self.queue: queue.Queue[Request | None] = queue.Queue()
        self.sampler_lock = threading.Lock()
        self.closed = False  # no new request is taken (closed, or a lane failed)
        self.closed_why = "the embedded teacher was closed"  # what requests still running are told
        self._shut = False  # close() has run: lanes joined, contexts freed
        self._lanes: list[_Lane] = []
        try:
            for index, size in enumerate(plan.sizes):
                self._lanes.append(_Lane(self, index, size))
        except BaseException:
            self._free_lanes()
            raise
        for lane in self._lanes:
            lane.thread.start()

    def submit(self, request: Request) -> concurrent.futures.Future[Completion]:
        if self.closed:
            raise RuntimeError("the embedded teacher is closed")
        self.queue.put(request)
        return request.future

    def close(self) -> None:
        """Fail the running and queued requests (at the next token), free the contexts. Also
        after a lane failed (which closed the decoder to new requests): the other lanes still
        wait for work, and every context is still to free."""
        if self._shut:
            return
        self._shut = True
        self.closed = True
        for _ in self._lanes:
            self.queue.put(None)  # wakes each lane that waits for work
        for lane in self._lanes:
            if lane.thread.is_alive():
                lane.thread.join()
        self.drain()  # anything submitted while the lanes were ending
        self._free_lanes()

    def _free_lanes(self) -> None:
        for lane in self._lanes:
            lane.free()
        self._lanes = []

    def drain(self, why: str = "the embedded teacher was closed") -> None:
        """Fail every queued request; the wake-ups meant for other lanes stay queued."""
        wakeups = 0
        while True:
            try:
                request = self.queue.get_nowait()
            except queue.Empty:
                break
            if request is None:
                wakeups += 1
            elif request.future.set_running_or_notify_cancel():
                fail(request, why)
        for _ in range(wakeups):
            self.queue.put(None)


def fail(request: Request, message: str) -> None:
    if not request.future.done():
        request.future.set_result(
            Completion(
                text="",
                n_tokens=0,
                finish="error",
                started_at=datetime.now(UTC),
                elapsed_ms=0.0,
                error=message,
            )
        )


class _Lane:
    """One llama.cpp context and the thread that drives it: `n_seq` sequences, batched."""

    def __init__(self, decoder: BatchedDecoder, index: int, n_seq: int) -> None:
        import llama_cpp
        from llama_cpp import _internals

        self.decoder = decoder
        self.llama = llama = decoder.llama
        self.n_seq = n_seq
        self.n_ctx_seq = decoder.n_ctx_seq
        params = llama_cpp.llama_context_default_params()
        # Everything else as the Llama's own context (KV types, attention), for the same numbers
        # as its sequential path.
        ctypes.memmove(
            ctypes.byref(params), ctypes.byref(llama.context_params), ctypes.sizeof(params)
        )
        params.n_ctx = n_seq * self.n_ctx_seq
        params.n_seq_max = n_seq
        params.kv_unified = False  # one stream per sequence: no cross-sequence attention work
        params.n_batch = params.n_ubatch = N_BATCH
        params.n_threads = decoder.plan.decode_threads
        params.n_threads_batch = decoder.plan.prompt_threads
        self._ctx = _internals.LlamaContext(model=llama._model, params=params, verbose=False)
        self._batch = llama_cpp.llama_batch_init(max(N_BATCH, n_seq), 0, 1)
        self._eog = llama_cpp.llama_vocab_is_eog
        self._vocab = llama._model.vocab
        self._decode = llama_cpp.llama_decode
        self._seq_rm = llama_cpp.llama_memory_seq_rm
        # Per slot, the prompt whose KV is still in its cache.
        self._kept: list[list[int]] = [[] for _ in range(n_seq)]
        self.thread = threading.Thread(
            target=self._run, name=f"llamacpp-teacher-{index}", daemon=True
        )

    def free(self) -> None:
        import llama_cpp

        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        self._ctx.close()

    def _run(self) -> None:
        running: dict[int, _Seq] = {}
        try:
            self._loop(running)
        except Exception as exc:
            # A bug must not leave callers waiting forever: fail everything (the error goes into
            # each call's stored error_message), take no more.
            why = f"the embedded teacher failed: {exc!r}"
            self.decoder.closed_why = why  # the other lanes stop with this reason, too
            self.decoder.closed = True
            for seq in list(running.values()):
                fail(seq.request, why)
            self.decoder.drain(why)

    def _loop(self, running: dict[int, _Seq]) -> None:
        free = list(range(self.n_seq))
        requests = self.decoder.queue
        while True:
            if self.decoder.closed:
                for seq in list(running.values()):
                    fail(seq.request, self.decoder.closed_why)
                    self._release(running, free, seq)
                self.decoder.drain(self.decoder.closed_why)
                return
            # Admit queued requests while streams are free; block only when idle.
            while free and not self.decoder.closed:
                try:
                    request = requests.get(block=not running)
                except queue.Empty:
                    break
                if request is None:
                    break
                if request.cancelled.is_set() or not request.future.set_running_or_notify_cancel():
                    continue
                slot = self._pick_slot(free, request.tokens)
                started = self._start(request, slot)
                if started is None:
                    continue
                seq = started
                free.remove(slot)
                running[seq.slot] = seq
                if self._prefill(seq):
                    self._sample(seq, -1)
                if seq.pending < 0 or self._check(seq):
                    self._finish(running, free, seq)
            if running and not self.decoder.closed:
                self._step(running, free)

    def _start(self, request: Request, slot: int) -> _Seq | None:
        from llama_cpp.llama_grammar import LlamaGrammar

        from srt_local.teachers.greedy_grammar import GreedyGrammar

        n_prompt = len(request.tokens)
        if n_prompt >= self.n_ctx_seq:
            fail(
                request,
                f"Requested tokens ({n_prompt}) exceed context window of {self.n_ctx_seq}",
            )
            return None
        grammar = None
        if request.schema is not None:
            grammar = LlamaGrammar.from_json_schema(json.dumps(request.schema), verbose=False)
        llama = self.llama
        lazy = grammar is not None and request.temperature == 0.0
        with self.decoder.sampler_lock:
            # _init_sampler reads the dist sampler's seed from the shared Llama, as
            # create_completion sets it.
            llama.set_seed(request.seed)
            sampler: Any = llama._init_sampler(
                top_k=request.top_k if request.top_k is not None else TOP_K,
                top_p=request.top_p if request.top_p is not None else TOP_P,
                min_p=MIN_P,
                typical_p=TYPICAL_P,
                temp=request.temperature,
                repeat_penalty=request.repeat_penalty,
                grammar=None if lazy else grammar,
            )
        if lazy:
            assert grammar is not None
            sampler = GreedyGrammar(llama, sampler, grammar)
        # create_completion's cut: the prompt and the reply must fit the context.
        max_tokens = min(request.max_tokens, self.n_ctx_seq - n_prompt)
        now = time.monotonic()
        return _Seq(
            request=request,
            slot=slot,
            sampler=sampler,
            started_at=datetime.now(UTC),
            began=time.perf_counter(),
            deadline=now + request.timeout,
            max_tokens=max_tokens,
            stop=[s.encode("utf-8") for s in request.stop if s],
        )

    def _pick_slot(self, free: list[int], tokens: list[int]) -> int:
        """The free slot whose kept prompt shares the longest prefix with `tokens`."""
        return max(free, key=lambda slot: (_common(self._kept[slot], tokens), -slot))

    def _prefill(self, seq: _Seq) -> bool:
        """Evaluate the prompt in chunks of N_BATCH (logits for each chunk's last token only),
        after the prefix that the slot's previous prompt left in its KV cache (the system
        prompt and the template's head, about a fifth of a reflection prompt). At least the
        last token is evaluated, for its logits."""
        tokens = seq.request.tokens
        kept = min(_common(self._kept[seq.slot], tokens), len(tokens) - 1)
        self._seq_rm(self._ctx.memory, seq.slot, kept, -1)
        self._kept[seq.slot] = []
        for start in range(kept, len(tokens), N_BATCH):
            chunk = tokens[start : start + N_BATCH]
            b = self._batch
            b.n_tokens = len(chunk)
            for i, token in enumerate(chunk):
                b.token[i] = token
                b.pos[i] = start + i
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = seq.slot
                b.logits[i] = i == len(chunk) - 1
            rc = self._decode(self._ctx.ctx, b)
            if rc != 0:
                self._seq_rm(self._ctx.memory, seq.slot, -1, -1)
                fail(seq.request, f"llama_decode failed ({rc}) on the prompt")
                return False
        seq.n_past = len(tokens)
        self._kept[seq.slot] = tokens
        return True

    def _step(self, running: dict[int, _Seq], free: list[int]) -> None:
        seqs = list(running.values())
        b = self._batch
        b.n_tokens = len(seqs)
        for i, seq in enumerate(seqs):
            b.token[i] = seq.pending
            b.pos[i] = seq.n_past
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq.slot
            b.logits[i] = True
        rc = self._decode(self._ctx.ctx, b)
        if rc != 0:
            for seq in seqs:
                fail(seq.request, f"llama_decode failed ({rc})")
                self._release(running, free, seq)
            return
        for i, seq in enumerate(seqs):
            seq.n_past += 1
            self._sample(seq, i)
            if self._check(seq):
                self._finish(running, free, seq)

    def _sample(self, seq: _Seq, index: int) -> None:
        seq.pending = int(seq.sampler.sample(self._ctx, index))

    def _check(self, seq: _Seq) -> bool:
        """Take the pending token into the reply; True (with `seq.reason`) when the reply is
        finished, by create_completion's rules."""
        token = seq.pending
        if self._eog(self._vocab, token):
            seq.reason = "stop"
            return True
        seq.out.append(token)
        if seq.request.cancelled.is_set():
            seq.reason = "cancelled"
            return True
        if time.monotonic() > seq.deadline:
            seq.reason = "timeout"
            return True
        piece = bytes(self.llama.detokenize([token]))
        seq.n_bytes += len(piece)
        limit = seq.request.max_bytes
        if limit is not None and seq.n_bytes > limit:
            seq.reason = "too_long"
            return True
        if _open_character(piece, seq):
            return False  # the rest of a UTF-8 character is to come: no stop or length check
        if seq.stop and any(s in self._text(seq) for s in seq.stop):
            seq.reason = "stop"
            return True
        if len(seq.out) >= seq.max_tokens:
            seq.reason = "length"
            return True
        return False

    def _text(self, seq: _Seq) -> bytes:
        return bytes(self.llama.detokenize(seq.out, prev_tokens=seq.request.tokens))

    def _finish(self, running: dict[int, _Seq], free: list[int], seq: _Seq) -> None:
        text = self._text(seq)
        if seq.reason == "stop":
            for s in seq.stop:
                if s in text:
                    text = text[: text.index(s)]
        if not seq.request.future.done():
            seq.request.future.set_result(
                Completion(
                    text=text.decode("utf-8", errors="ignore"),
                    n_tokens=len(seq.out),
                    finish=seq.reason or "error",
                    started_at=seq.started_at,
                    elapsed_ms=(time.perf_counter() - seq.began) * 1000,
                )
            )
        self._release(running, free, seq)

    def _release(self, running: dict[int, _Seq], free: list[int], seq: _Seq) -> None:
        # Keep the prompt in the slot's cache for the next request's shared prefix.
        self._seq_rm(self._ctx.memory, seq.slot, len(self._kept[seq.slot]), -1)
        seq.sampler.close()
        running.pop(seq.slot, None)
        free.append(seq.slot)
        free.sort()


def _common(a: list[int], b: list[int]) -> int:
    """The length of the common prefix of two token lists."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _open_character(piece: bytes, seq: _Seq) -> bool:
    """Track a UTF-8 character split over tokens: True (and `seq.held` > 0) while one is open."""
    for byte in piece:
        if seq.held:
            seq.held -= 1
        elif byte >= 0xF0:
            seq.held = 3
        elif byte >= 0xE0:
            seq.held = 2
        elif byte >= 0xC0:
            seq.held = 1
    return seq.held > 0
