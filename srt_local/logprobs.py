"""Sums of target-token log-probabilities for many token sequences, on llama.cpp's low-level API.

A `Job` is one token sequence (BOS first) and the index where its target starts. The engine packs
whole jobs into each `llama_decode` (distinct sequence ids, one unified KV cache, cleared after
every pack), asks for logits only at the positions that predict a target token, and turns each
logits row into log p(token) with a log-softmax over the full vocabulary, a few rows per task
spread over the CPU threads. A job too big for one decode is decoded alone, in chunks.
Memory stays bounded: at most `max_outputs` rows of logits exist at once, never n_ctx x n_vocab.

A token's log-probability must not depend on what it was packed with (the scores are cached and
compared across runs). llama.cpp's CPU kernels give bit-identical rows only under conditions
measured here, so the engine keeps to them:
- no CPU "repack" weight layouts (their results depend on a row's place in the batch);
- no flash attention (its tiled softmax depends on the other sequences' KV cells);
- every decode has at least `min_rows` tokens and logits rows (other kernels run below that);
- every packed sequence starts at a KV cell that is a multiple of `KV_ALIGN` (the attention's
  SIMD sums over cells then split the same way as for the sequence alone).
Filler tokens in a sequence of their own do the padding; attention never mixes sequences.

On a GPU (CUDA) the same question has other answers, so the engine changes three things there
(each a setting, `EngineSettings`; the CPU keeps the above exactly):
- every decode has one fixed shape: `fixed_tokens` tokens and `max_outputs` output rows, filler
  and spare rows making up the rest. ggml's CUDA matrix products pick their kernel (MMVQ, MMQ or
  cuBLAS), tile sizes and split-K from the shapes; a row's dot products reduce over the weight's
  inner dimension inside that row, so with the shape fixed a row no longer depends on the others.
  Without it the same text packed into a 300- or a 4,000-token decode takes different kernels,
  the first suspect for the loss moves of up to 2% with pack mates seen on an H200 before shapes
  were fixed (not yet measured since: no GPU was lent to the session that fixed them);
- no flash attention (its KV tiling and its split across blocks follow n_kv and the batch);
- the attention's softmax and its product with V reduce over KV cells in thread strides and
  K-tiles: a sequence whose first cell moves changes how its cells are grouped. `kv_align` puts
  every packed sequence at a multiple of it; exactness needs the kernels' whole stride (up to
  1,024 cells in ggml's CUDA softmax), which costs most of the GPU's speed on short texts, so the
  default stays 16 and the residual is measured, not assumed: `scripts/bench_gpu.py` prints the
  largest loss difference between packed and one-at-a-time scoring for kv_align 16 and 1024.
Run to run, the same inputs give the same packs and shapes and so the same scores.

The reduction itself (`device_logprobs`) is row by row in ggml (argmax, get_rows, sum_rows), so it
adds no pack dependence; it computes max + log(sum(exp(row - max))) in float32 like the host path.

llama_cpp is imported inside the engine only: importing this module loads no native code.
"""

from __future__ import annotations

import ctypes
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from srt_local.errors import SrtError
from srt_local.model_files import ModelFileError

# The same names as config's (config imports no numpy; tests check the two agree).
SCORING_PATHS = ("auto", "host", "device")
FIXED_SHAPE = ("auto", "on", "off")
KV_ALIGN = 16
_GPU_BATCH = 4096
_GPU_SEQS = 64
# Above this magnitude a float32 exp() of a raw logit could overflow or underflow the sum, so the
# row's maximum is subtracted first; below it the shift is skipped (it costs a pass over the row).
_EXP_SAFE = 60.0
# Logit values handed to one log-softmax task: enough to amortise the task, few enough for cache.
_TASK_VALUES = 1 << 20
_LOOKAHEAD = 64


@dataclass(frozen=True)
class Job:
    """A token sequence to score: the log-probabilities of tokens[start:] given what precedes."""

    tokens: tuple[int, ...]
    start: int

    @property
    def n_target(self) -> int:
        return len(self.tokens) - self.start

    @property
    def n_decoded(self) -> int:
        # The last token predicts nothing that is scored, so it is never decoded.
        return len(self.tokens) - 1


@dataclass(frozen=True)
class EngineSettings:
    """How the engine uses llama.cpp. The defaults were measured on a 2-core CPU (README).

    A 0 (or "auto") is chosen from the backend: on the CPU exactly the measured defaults, where the
    output layer runs on a GPU larger decodes of one fixed shape (`_resolve`).
    """

    n_ctx: int = 2048  # the longest sequence it will be given
    n_batch: int = 0  # tokens per decode, filler aside; 0: 512 on the CPU, 4096 on a GPU
    n_seq_max: int = 0  # jobs per decode; 0: 16 on the CPU, 64 on a GPU
    logits_budget_bytes: int = 128 << 20  # the host path's logits rows
    n_threads: int = 0
    n_gpu_layers: int = -1
    min_rows: int = 16
    flash_attn: bool = False
    scoring_path: str = "auto"  # auto: "device" where the output layer runs on a GPU
    n_ubatch: int = 0  # 0: the whole decode in one micro-batch (the device path needs that)
    rows_per_decode: int = 0  # logits rows per decode; 0: from the budget / free memory
    kv_align: int = 0  # 0: KV_ALIGN
    fixed_shape: str = "auto"  # pad every decode to one shape; auto: on a GPU


@dataclass(frozen=True)
class Resolved:
    """The sizes an engine actually uses, once the backend is known."""

    path: str  # "host" or "device"
    on_gpu: bool
    n_batch: int
    n_seq_max: int
    max_outputs: int
    kv_align: int
    fixed_shape: bool


# The device path's output rows: llama.cpp keeps, per row, n_vocab floats of sampled logits, of
# probabilities, of candidates and of raw logits on the host (pinned where the GPU has a host
# buffer type), although one float is used. At most this much host memory goes to them.
DEVICE_HOST_BYTES = 8 << 30


class ScoringPathError(ModelFileError, SrtError):
    """The scoring path asked for cannot run with this llama.cpp build."""


def resolve(
    settings: EngineSettings,
    n_vocab: int,
    on_gpu: bool,
    device_ok: bool,
    host_free: int,
    gpu_free: int | None = None,
) -> Resolved:
    """The sizes to use: settings win, 0/"auto" follow the backend (CPU: exactly as measured)."""
    path = settings.scoring_path
    if path not in SCORING_PATHS:
        raise ScoringPathError(f"scoring_path {path!r}: expected one of {', '.join(SCORING_PATHS)}")
    if path == "auto":
        path = "device" if on_gpu and device_ok else "host"
    elif path == "device" and not device_ok:
        raise ScoringPathError(
            "scoring_path 'device': this llama-cpp-python does not bind llama.cpp's backend "
            "sampling API or the ggml functions it needs; use scoring_path = 'host'"
        )
    min_rows = settings.min_rows
    n_batch = max(settings.n_batch or (_GPU_BATCH if on_gpu else 512), min_rows)
    n_seq_max = settings.n_seq_max or (_GPU_SEQS if on_gpu else 16)
    if settings.rows_per_decode:
        rows = settings.rows_per_decode
    elif path == "device" and on_gpu:
        # llama.cpp keeps 4 floats per vocabulary entry per output row on the host (above).
        rows = min(DEVICE_HOST_BYTES, host_free // 4) // (16 * n_vocab)
        if gpu_free is not None:
            # The reduction's buffers on the GPU (logits, their padded copy, the shifted
            # exponentials: 12 bytes per vocabulary entry per row) take at most a quarter of
            # what the model left free.
            rows = min(rows, gpu_free // 4 // (12 * n_vocab))
    else:
        rows = settings.logits_budget_bytes // (4 * n_vocab)
    max_outputs = max(min_rows, min(n_batch, rows))
    fixed = settings.fixed_shape == "on" or (settings.fixed_shape == "auto" and on_gpu)
    return Resolved(
        path=path,
        on_gpu=on_gpu,
        n_batch=n_batch,
        n_seq_max=n_seq_max,
        max_outputs=max_outputs,
        kv_align=settings.kv_align or KV_ALIGN,
        fixed_shape=fixed,
    )


def host_available_bytes() -> int:
    """MemAvailable from /proc/meminfo, else a conservative 8 GiB."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 8 << 30


@dataclass
class DecodeStats:
    """Counters an engine keeps across calls (the tests and the benchmark read them)."""

    decodes: int = 0
    tokens: int = 0  # job tokens decoded
    outputs: int = 0  # logits rows read
    filler: int = 0  # tokens decoded only to align or pad
    failures: int = 0
    decode_s: float = 0.0  # wall time inside llama_decode


def physical_cores() -> int:
    """Physical cores (hyper-threads share one core's matmul units), else logical CPUs."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cores: set[tuple[str, str]] = set()
            physical = core = ""
            for line in fh:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "physical id":
                    physical = value
                elif key == "core id":
                    core = value
                elif not key and core:
                    cores.add((physical, core))
                    core = ""
            if core:
                cores.add((physical, core))
        if cores:
            return len(cores)
    except OSError:
        pass
    return os.cpu_count() or 1


_ERROR_LEVEL = 4  # GGML_LOG_LEVEL_ERROR; 5 continues the previous message
_log_state: dict[str, Any] = {"callback": None, "level": 0}
recent_errors: deque[str] = deque(maxlen=20)


def _silence_llama_log() -> None:
    """Keep llama.cpp's chatter off stderr; its error lines are kept in `recent_errors`."""
    import llama_cpp as llama

    if _log_state["callback"] is not None:
        return

    def log(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
        if level != 5:
            _log_state["level"] = level
        if _log_state["level"] >= _ERROR_LEVEL and text:
            recent_errors.append(text.decode("utf-8", errors="replace").rstrip())

    callback = llama.llama_log_callback(log)
    _log_state["callback"] = callback  # ctypes callbacks must outlive their registration
    llama.llama_log_set(callback, ctypes.c_void_p(0))


class _Batch:
    """A llama_batch whose arrays are numpy buffers we own, so filling it is vectorised."""

    def __init__(self, capacity: int) -> None:
        import llama_cpp as llama

        self.capacity = capacity
        self.token = np.zeros(capacity, dtype=np.int32)
        self.pos = np.zeros(capacity, dtype=np.int32)
        self.n_seq_id = np.ones(capacity, dtype=np.int32)
        self.seq_store = np.zeros(capacity, dtype=np.int32)
        self.logits = np.zeros(capacity, dtype=np.int8)
        # seq_id is an array of pointers, one per token, each to that token's (single) sequence id.
        base = self.seq_store.ctypes.data
        self.seq_ptrs = (ctypes.POINTER(ctypes.c_int32) * capacity)(
            *[ctypes.cast(base + 4 * i, ctypes.POINTER(ctypes.c_int32)) for i in range(capacity)]
        )
        # The ctypes stubs type these fields as arrays; they are pointers to our buffers.
        struct: Any = llama.llama_batch()
        struct.token = self.token.ctypes.data_as(ctypes.POINTER(llama.llama_token))
        struct.embd = ctypes.POINTER(ctypes.c_float)()
        struct.pos = self.pos.ctypes.data_as(ctypes.POINTER(llama.llama_pos))
        struct.n_seq_id = self.n_seq_id.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        struct.seq_id = ctypes.cast(
            self.seq_ptrs, ctypes.POINTER(ctypes.POINTER(llama.llama_seq_id))
        )
        struct.logits = self.logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))
        self.struct = struct
        self.n = 0

    def add(self, seq: int, tokens: Sequence[int], first_pos: int, first_output: int) -> None:
        """Append tokens at positions first_pos..; logits wanted from position first_output on."""
        a, b = self.n, self.n + len(tokens)
        self.token[a:b] = tokens
        self.pos[a:b] = np.arange(first_pos, first_pos + len(tokens), dtype=np.int32)
        self.seq_store[a:b] = seq
        self.logits[a:b] = self.pos[a:b] >= first_output
        self.n = b


@dataclass
class _Rows:
    """The logits rows of one decode that are read: whose they are and which token they score."""

    jobs: list[int] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)
    batch_index: list[int] = field(default_factory=list)

    def add(self, job_index: int, job: Job, at: int, lo: int, hi: int) -> None:
        """Rows for the job's tokens lo..hi, placed from batch index `at`."""
        out_lo = max(lo, job.start - 1)
        if hi > out_lo:
            self.jobs.extend([job_index] * (hi - out_lo))
            self.targets.extend(job.tokens[out_lo + 1 : hi + 1])
            self.batch_index.extend(range(at + out_lo - lo, at + hi - lo))


class LlamaEngine:
    """One llama.cpp model and context, scoring Jobs. Not thread-safe: one caller at a time."""

    def __init__(self, gguf_path: Path, settings: EngineSettings) -> None:
        # OpenMP threads that spin after a decode would steal the cores the log-softmax runs
        # on; this only takes effect if llama.cpp is not loaded yet (the CLI sets it first).
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import llama_cpp as llama

        _silence_llama_log()
        llama.llama_backend_init()
        self._llama = llama
        self.path = gguf_path
        self.settings = settings
        self.stats = DecodeStats()
        self.last_error: str | None = None
        self.n_threads = settings.n_threads or physical_cores()
        self._pool: ThreadPoolExecutor | None = None
        self._ctx: Any = None
        self._device: Any = None

        mparams = llama.llama_model_default_params()
        mparams.n_gpu_layers = settings.n_gpu_layers
        mparams.use_extra_bufts = False
        model = llama.llama_model_load_from_file(str(gguf_path).encode(), mparams)
        if not model:
            raise ModelFileError(f"{gguf_path}: llama.cpp could not load this GGUF")
        self._model: Any = model
        try:
            self._vocab = llama.llama_model_get_vocab(model)
            self.n_vocab = int(llama.llama_vocab_n_tokens(self._vocab))
            self.bos = int(llama.llama_vocab_bos(self._vocab))
            if self.bos < 0:
                raise ModelFileError(
                    f"{gguf_path}: the vocabulary has no BOS token, which every scored text "
                    "starts with; this GGUF cannot be a student"
                )
            self.eos_text = self.piece(int(llama.llama_vocab_eos(self._vocab)))
            template = llama.llama_model_chat_template(model, None)
            self.chat_template: str | None = template.decode("utf-8") if template else None

            n_layer = int(llama.llama_model_n_layer(model))
            on_gpu = bool(llama.llama_supports_gpu_offload()) and (
                settings.n_gpu_layers < 0 or settings.n_gpu_layers > n_layer
            )
            from srt_local import device_logprobs

            device_ok = settings.scoring_path != "host" and device_logprobs.available()
            host_free = host_available_bytes() if on_gpu else 0
            gpu_free = device_logprobs.gpu_free_bytes() if on_gpu else None
            self.resolved = resolve(settings, self.n_vocab, on_gpu, device_ok, host_free, gpu_free)
            self.scoring_path = self.resolved.path
            self.n_batch = self.resolved.n_batch
            self.n_seq_max = self.resolved.n_seq_max
            self.max_outputs = self.resolved.max_outputs
            self.kv_align = self.resolved.kv_align
            self.fixed_shape = self.resolved.fixed_shape
            # Every fixed-shape decode has this many tokens: the largest a pack or a piece can be.
            self.fixed_tokens = self.n_batch + max(self.kv_align, settings.min_rows)
            # Room for the filler: alignment before each job and padding after the last. A pack's
            # aligned sizes sum to at most n_batch + kv_align, so the GPU's tighter bound holds;
            # the CPU keeps the bound it was measured with.
            if on_gpu:
                capacity = self.fixed_tokens + settings.min_rows
            else:
                capacity = self.n_batch + self.kv_align * self.n_seq_max + settings.min_rows
            self.filler_seq = self.n_seq_max
            n_ctx = settings.n_ctx + (self.fixed_tokens if self.fixed_shape else 0)
            cparams = llama.llama_context_default_params()
            cparams.n_ctx = _round_up(max(n_ctx, capacity), 256)
            cparams.n_batch = capacity
            # The device path gives its targets per decode: one micro-batch per decode.
            ubatch = settings.n_ubatch if self.scoring_path == "host" else 0
            cparams.n_ubatch = min(ubatch, capacity) if ubatch else capacity
            cparams.n_seq_max = self.n_seq_max + 1
            cparams.n_outputs_max = self.max_outputs + settings.min_rows
            cparams.n_outputs_max_per_seq = 0
            cparams.n_threads = cparams.n_threads_batch = self.n_threads
            cparams.kv_unified = True
            cparams.flash_attn_type = 1 if settings.flash_attn else 0
            cparams.no_perf = True
            ctx = llama.llama_init_from_model(model, cparams)
            if not ctx:
                raise ModelFileError(f"{gguf_path}: llama.cpp could not create a context")
            self._ctx = ctx
            self.n_ctx = int(llama.llama_n_ctx(ctx))
            self._mem = llama.llama_get_memory(ctx)
            self._batches = (_Batch(capacity), _Batch(capacity))
            self._turn = 0
            if self.scoring_path == "device":
                try:
                    self._device = device_logprobs.DeviceReducer(llama, ctx, self.n_seq_max + 1)
                except RuntimeError as exc:
                    raise ScoringPathError(
                        f"{gguf_path}: {exc}; use scoring_path = 'host' for this student"
                    ) from exc
            self._pool = ThreadPoolExecutor(self.n_threads, thread_name_prefix="srt-logsoftmax")
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ vocabulary

    def tokenize(self, text: str, parse_special: bool = False) -> list[int]:
        """The text's tokens, no BOS/EOS added; control tokens parsed only if parse_special."""
        raw = text.encode("utf-8")
        capacity = len(raw) + 16
        buf = (self._llama.llama_token * capacity)()
        n = self._llama.llama_tokenize(
            self._vocab, raw, len(raw), buf, capacity, False, parse_special
        )
        if n < 0:
            capacity = -n
            buf = (self._llama.llama_token * capacity)()
            n = self._llama.llama_tokenize(
                self._vocab, raw, len(raw), buf, capacity, False, parse_special
            )
        return list(buf[:n])

    def detokenize(self, tokens: Sequence[int]) -> str:
        """The text of tokens (a character cut in half at the end is dropped)."""
        if not tokens:
            return ""
        arr = (self._llama.llama_token * len(tokens))(*tokens)
        capacity = 8 * len(tokens) + 16
        buf = ctypes.create_string_buffer(capacity)
        n = self._llama.llama_detokenize(self._vocab, arr, len(tokens), buf, capacity, False, True)
        if n < 0:
            capacity = -n
            buf = ctypes.create_string_buffer(capacity)
            n = self._llama.llama_detokenize(
                self._vocab, arr, len(tokens), buf, capacity, False, True
            )
        return buf.raw[:n].decode("utf-8", errors="ignore")

    def piece(self, token: int) -> str:
        """The text of one token, control tokens included."""
        if token < 0:
            return ""
        buf = ctypes.create_string_buffer(256)
        n = self._llama.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, True)
        return buf.raw[: max(n, 0)].decode("utf-8", errors="replace")

    # ------------------------------------------------------------------ scoring

    def score(
        self,
        jobs: Sequence[Job],
        on_done: Callable[[int, float | None], None] | None = None,
        read_logits: bool = True,
    ) -> list[float | None]:
        """Sum of log p(target token) for each job; None where llama.cpp failed on it.

        `on_done(i, value)` is called as each job finishes. With read_logits=False the same decodes
        run with the same logits requested and nothing is read (the benchmark's limit); the sums
        are then 0.0. A pack whose decode fails is retried one job at a time.

        Packs are pipelined: the next pack's batch is filled while the device computes the last
        one (llama_decode returns once a GPU graph is queued; reading its outputs waits for it).
        """
        results: list[float | None] = [None] * len(jobs)

        def finish(i: int, value: float | None) -> None:
            results[i] = value
            if on_done is not None:
                on_done(i, value)

        pending: _Flight | None = None
        for pack in self._plan(jobs):
            if len(pack) == 1 and not self.fits(jobs[pack[0]]):
                self._land(jobs, pending, finish, read_logits)
                pending = None
                if not self._decode(jobs, pack, finish, read_logits):
                    finish(pack[0], None)
                continue
            filled = self._fill(jobs, [(i, 0, jobs[i].n_decoded) for i in pack])
            self._land(jobs, pending, finish, read_logits)
            pending = None
            llama = self._llama
            llama.llama_memory_clear(self._mem, True)
            if self._launch(filled):
                pending = _Flight(pack, filled)
            else:
                llama.llama_memory_clear(self._mem, True)
                self._retry_alone(jobs, pack, finish, read_logits)
        self._land(jobs, pending, finish, read_logits)
        return results

    def _land(
        self,
        jobs: Sequence[Job],
        flight: _Flight | None,
        finish: Callable[[int, float | None], None],
        read_logits: bool,
    ) -> None:
        """Read a launched pack's rows (waiting for the device) and finish its jobs."""
        if flight is None:
            return
        sums = dict.fromkeys(flight.pack, 0.0)
        ok = self._collect(flight.filled, sums, read_logits)
        self._llama.llama_memory_clear(self._mem, True)
        if not ok:
            self._retry_alone(jobs, flight.pack, finish, read_logits)
            return
        for i in flight.pack:
            finish(i, sums[i])

    def _retry_alone(
        self,
        jobs: Sequence[Job],
        pack: list[int],
        finish: Callable[[int, float | None], None],
        read_logits: bool,
    ) -> None:
        for i in pack:
            if not self._decode(jobs, [i], finish, read_logits):
                finish(i, None)

    def fits(self, job: Job) -> bool:
        """Whether a job goes whole into one decode (else it is decoded alone, in chunks)."""
        return job.n_decoded <= self.n_batch and job.n_target <= self.max_outputs

    def _plan(self, jobs: Sequence[Job]) -> Iterator[list[int]]:
        """Packs of whole jobs, and each oversized job alone, roughly in input order.

        A pack is filled first-fit from the next `_LOOKAHEAD` jobs, so that pairs finish about
        in order (progress moves steadily) while gaps still get filled.
        """
        taken = [False] * len(jobs)
        head = 0
        align = self.kv_align
        while head < len(jobs):
            if taken[head]:
                head += 1
                continue
            if not self.fits(jobs[head]):
                taken[head] = True
                yield [head]
                continue
            pack: list[int] = []
            cells = outputs = seen = 0
            i = head
            while i < len(jobs) and seen < _LOOKAHEAD:
                if not taken[i]:
                    seen += 1
                    job = jobs[i]
                    size = _round_up(job.n_decoded, align)
                    if (
                        self.fits(job)
                        and len(pack) < self.n_seq_max
                        and cells + size <= self.n_batch + align
                        and outputs + job.n_target <= self.max_outputs
                    ):
                        pack.append(i)
                        taken[i] = True
                        cells += size
                        outputs += job.n_target
                i += 1
            yield pack

    def _decode(
        self,
        jobs: Sequence[Job],
        pack: list[int],
        finish: Callable[[int, float | None], None],
        read_logits: bool,
    ) -> bool:
        """Decode a pack (or one oversized job in chunks) now and finish its jobs; False on
        failure."""
        llama = self._llama
        sums = dict.fromkeys(pack, 0.0)
        llama.llama_memory_clear(self._mem, True)
        try:
            for chunk in self._chunks(jobs, pack):
                filled = self._fill(jobs, chunk)
                if not self._launch(filled) or not self._collect(filled, sums, read_logits):
                    return False
        finally:
            llama.llama_memory_clear(self._mem, True)
        for i in pack:
            finish(i, sums[i])
        return True

    def _chunks(self, jobs: Sequence[Job], pack: list[int]) -> Iterator[list[tuple[int, int, int]]]:
        """Decodes as lists of (job, lo, hi) token ranges: a pack at once, a big job in pieces."""
        if len(pack) > 1 or self.fits(jobs[pack[0]]):
            yield [(i, 0, jobs[i].n_decoded) for i in pack]
            return
        (i,) = pack
        job = jobs[i]
        n, first_output = job.n_decoded, job.start - 1
        lo = 0
        while lo < n:
            hi = min(n, lo + self.n_batch, max(lo, first_output) + self.max_outputs)
            if n - hi < self.settings.min_rows:
                # A short rest rides along (the context has room for it): a piece of its own
                # would need filler, and filler cells between two pieces would shift the KV
                # cells of the next.
                hi = n
            yield [(i, lo, hi)]
            lo = hi

    def _fill(self, jobs: Sequence[Job], chunk: list[tuple[int, int, int]]) -> _Filled:
        """The batch of one decode, its read rows and filler; touches no llama.cpp state."""
        self._turn ^= 1
        batch = self._batches[self._turn]
        batch.n = 0
        rows = _Rows()
        filler = 0
        align = self.kv_align
        for seq, (i, lo, hi) in enumerate(chunk):
            job = jobs[i]
            gap = -batch.n % align if lo == 0 else 0
            if gap:
                batch.add(self.filler_seq, [self.bos] * gap, filler, 1 << 30)
                filler += gap
            rows.add(i, job, batch.n, lo, hi)
            batch.add(seq, job.tokens[lo:hi], lo, job.start - 1)
        n_out = len(rows.batch_index)
        min_rows = self.settings.min_rows
        # A fixed shape: every decode has the same tokens and output rows, so the backend picks
        # the same kernels and splits whatever the pack (see the module's docstring).
        want_tokens = self.fixed_tokens if self.fixed_shape else min_rows
        want_rows = self.max_outputs if self.fixed_shape else min_rows
        short = want_tokens - batch.n
        if short > 0:
            batch.add(self.filler_seq, [self.bos] * short, filler, 1 << 30)
            filler += short
        if 0 < n_out < want_rows:
            spare = np.flatnonzero(batch.logits[: batch.n] == 0)[: want_rows - n_out]
            batch.logits[spare] = 1
        batch.struct.n_tokens = batch.n
        filled = _Filled(batch, rows, filler, n_out)
        if self._device is not None:
            out_index = np.flatnonzero(batch.logits[: batch.n])
            by_index = np.zeros(batch.n, dtype=np.int32)
            by_index[rows.batch_index] = rows.targets
            filled.out_index = out_index
            filled.out_targets = by_index[out_index]
            filled.positions = np.searchsorted(out_index, rows.batch_index)
        return filled

    def _launch(self, filled: _Filled) -> bool:
        """Start one decode; False (with `last_error`) if llama.cpp refused it."""
        llama = self._llama
        batch = filled.batch
        if self._device is not None:
            self._device.prepare(filled.out_targets)
        started = time.perf_counter()
        rc = llama.llama_decode(self._ctx, batch.struct)
        self.stats.decode_s += time.perf_counter() - started
        self.stats.decodes += 1
        self.stats.tokens += batch.n - filled.filler
        self.stats.filler += filled.filler
        self.stats.outputs += filled.n_out
        if rc != 0:
            self.stats.failures += 1
            said = "; ".join(recent_errors) or "no message"
            self.last_error = f"llama_decode returned {rc} ({said})"
            recent_errors.clear()
            return False
        return True

    def _collect(self, filled: _Filled, sums: dict[int, float], read_logits: bool) -> bool:
        """Add a launched decode's log-probabilities to `sums`; False if they cannot be read."""
        llama = self._llama
        rows = filled.rows
        try:
            if read_logits and filled.n_out:
                if self._device is not None:
                    values = self._device.read(filled.out_index)
                    logp = values[filled.positions]
                else:
                    logp = self._read(rows)
                for i, value in zip(rows.jobs, logp.tolist(), strict=True):
                    sums[i] += value
            else:
                llama.llama_synchronize(self._ctx)
        except RuntimeError as exc:
            self.stats.failures += 1
            self.last_error = str(exc)
            return False
        finally:
            if filled.filler:
                llama.llama_memory_seq_rm(self._mem, self.filler_seq, -1, -1)
        return True

    def _read(self, rows: _Rows) -> npt.NDArray[np.float64]:
        """log p(target) of each read row, a few rows per task on the thread pool."""
        llama = self._llama
        assert self._pool is not None
        n = len(rows.batch_index)
        base = ctypes.cast(llama.llama_get_logits(self._ctx), ctypes.c_void_p).value
        if not base:
            raise RuntimeError("llama.cpp returned no logits")
        row_bytes = 4 * self.n_vocab
        index = np.empty(n, dtype=np.int64)
        for k, i in enumerate(rows.batch_index):
            addr = ctypes.cast(llama.llama_get_logits_ith(self._ctx, i), ctypes.c_void_p).value
            if not addr:
                raise RuntimeError(f"llama.cpp has no logits for batch row {i}")
            index[k] = (addr - base) // row_bytes
        buffer = ctypes.cast(base, ctypes.POINTER(ctypes.c_float))
        logits = np.ctypeslib.as_array(buffer, shape=(int(index.max()) + 1, self.n_vocab))
        targets = np.asarray(rows.targets, dtype=np.int64)
        logp = np.empty(n, dtype=np.float64)
        step = max(1, _TASK_VALUES // self.n_vocab)
        tasks = [
            self._pool.submit(_log_softmax_rows, logits, index, targets, logp, k, k + step)
            for k in range(0, n, step)
        ]
        for task in tasks:
            task.result()
        return logp

    def close(self) -> None:
        """Free the context and the model (idempotent)."""
        llama = self._llama
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._device is not None and self._ctx:
            self._device.close()
            self._device = None
        if self._ctx:
            llama.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            llama.llama_model_free(self._model)
            self._model = None


@dataclass
class _Filled:
    """One decode, filled and ready: its batch, the rows it reads and how much is filler."""

    batch: _Batch
    rows: _Rows
    filler: int
    n_out: int
    # The device path's: output rows in batch order, their targets, each read row's output row.
    out_index: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    out_targets: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))
    positions: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))


@dataclass
class _Flight:
    """A pack whose decode was launched and whose rows are not read yet."""

    pack: list[int]
    filled: _Filled


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _log_softmax_rows(
    logits: npt.NDArray[np.float32],
    index: npt.NDArray[np.int64],
    targets: npt.NDArray[np.int64],
    out: npt.NDArray[np.float64],
    lo: int,
    hi: int,
) -> None:
    """out[k] = log softmax(logits[index[k]])[targets[k]] for k in lo..hi, in place in the rows.

    llama.cpp overwrites the buffer on the next decode, so the rows serve as scratch.
    """
    hi = min(hi, len(index))
    first = int(index[lo])
    if np.array_equal(index[lo:hi], np.arange(first, first + hi - lo)):
        # The usual case: the rows lie one after another, and a block takes fewer numpy calls.
        block = logits[first : first + hi - lo]
        picked = block[np.arange(hi - lo), targets[lo:hi]].astype(np.float64)
        top = block.max(axis=1)
        shift = np.where(np.abs(top) > _EXP_SAFE, top, np.float32(0))
        if shift.any():
            np.subtract(block, shift[:, None], out=block)
        np.exp(block, out=block)
        sums = block.sum(axis=1, dtype=np.float32).astype(np.float64)
        out[lo:hi] = picked - shift - np.log(sums)
        return
    for k in range(lo, hi):
        row = logits[index[k]]
        value = float(row[targets[k]])
        top = float(row.max())
        row_shift = top if abs(top) > _EXP_SAFE else 0.0
        if row_shift:
            np.subtract(row, np.float32(row_shift), out=row)
        np.exp(row, out=row)
        out[k] = value - row_shift - math.log(float(row.sum(dtype=np.float32)))
