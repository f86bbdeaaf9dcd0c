"""Sums of target-token log-probabilities for many token sequences, on llama.cpp's low-level API.

A `Job` is one token sequence (BOS first) and the index where its target starts. The engine packs
several jobs into each `llama_decode` (distinct sequence ids, one unified KV cache), asks for logits
only at the positions that predict a target token, and turns each logits row into log p(token) with
a log-softmax over the full vocabulary, in bounded chunks of rows spread over the CPU threads.
Memory stays bounded: at most `max_outputs` rows of logits exist at once, never n_ctx x n_vocab.

llama_cpp is imported inside the engine only: importing this module loads no native code.
"""

from __future__ import annotations

import ctypes
import os
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from srt_local.model_files import ModelFileError

# Above this magnitude a float32 exp() of a raw logit could overflow or underflow the sum, so the
# row's maximum is subtracted first; below it the shift is skipped (it costs a pass over the row).
_EXP_SAFE = 60.0
# Rows handed to one log-softmax task: big enough to amortise the task, small enough to stay in cache.
_ROWS_PER_TASK = 4


@dataclass(frozen=True)
class Job:
    """A token sequence to score: the log-probabilities of tokens[start:] given what precedes."""

    tokens: tuple[int, ...]
    start: int

    @property
    def n_target(self) -> int:
        return len(self.tokens) - self.start


@dataclass(frozen=True)
class EngineSettings:
    """How the engine uses llama.cpp. The defaults were measured on a 2-core CPU (README)."""

    n_ctx: int = 4096
    n_batch: int = 512
    n_seq_max: int = 16
    kv_budget: int = 1024  # tokens of packed sequences in the KV cache at once (one long one may exceed)
    logits_budget_bytes: int = 128 << 20
    n_threads: int = 0
    n_gpu_layers: int = -1


@dataclass
class DecodeStats:
    """Counters an engine keeps across calls (the tests and the benchmark read them)."""

    decodes: int = 0
    tokens: int = 0
    outputs: int = 0
    failures: int = 0
    solo_retries: int = 0


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
        self.struct = llama.llama_batch()
        self.struct.token = self.token.ctypes.data_as(ctypes.POINTER(llama.llama_token))
        self.struct.embd = ctypes.POINTER(ctypes.c_float)()
        self.struct.pos = self.pos.ctypes.data_as(ctypes.POINTER(llama.llama_pos))
        self.struct.n_seq_id = self.n_seq_id.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        self.struct.seq_id = ctypes.cast(
            self.seq_ptrs, ctypes.POINTER(ctypes.POINTER(llama.llama_seq_id))
        )
        self.struct.logits = self.logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))
        self.n = 0

    def clear(self) -> None:
        self.n = 0

    def add(self, seq: int, tokens: Sequence[int], first_pos: int, first_output: int) -> None:
        """Append tokens at positions first_pos..; logits wanted from position first_output on."""
        k = len(tokens)
        a, b = self.n, self.n + k
        self.token[a:b] = tokens
        self.pos[a:b] = np.arange(first_pos, first_pos + k, dtype=np.int32)
        self.seq_store[a:b] = seq
        self.logits[a:b] = self.pos[a:b] >= first_output
        self.n = b


@dataclass
class _Active:
    """A job in the KV cache: its sequence id and how far it has been submitted."""

    index: int
    seq: int
    next_pos: int = 0


@dataclass
class _Pending:
    """Output rows of one decode: which job each row belongs to and which token it must score."""

    jobs: list[int] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)
    batch_index: list[int] = field(default_factory=list)


class DecodeError(RuntimeError):
    """llama_decode failed for a sequence even when decoded on its own."""


class LlamaEngine:
    """One llama.cpp model and context, scoring Jobs. Not thread-safe: one caller at a time."""

    def __init__(self, gguf_path: Path, settings: EngineSettings) -> None:
        import llama_cpp as llama

        _silence_llama_log()
        llama.llama_backend_init()
        self._llama = llama
        self.path = gguf_path
        self.settings = settings
        self.stats = DecodeStats()
        self.n_threads = settings.n_threads or physical_cores()

        mparams = llama.llama_model_default_params()
        mparams.n_gpu_layers = settings.n_gpu_layers
        model = llama.llama_model_load_from_file(str(gguf_path).encode(), mparams)
        if not model:
            raise ModelFileError(f"{gguf_path}: llama.cpp could not load this GGUF")
        self._model = model
        self._ctx: Any = None
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

            n_batch = settings.n_batch
            self.max_outputs = max(1, min(n_batch, settings.logits_budget_bytes // (4 * self.n_vocab)))
            cparams = llama.llama_context_default_params()
            cparams.n_ctx = settings.n_ctx
            cparams.n_batch = n_batch
            cparams.n_ubatch = n_batch
            cparams.n_seq_max = settings.n_seq_max
            cparams.n_outputs_max = self.max_outputs
            cparams.n_outputs_max_per_seq = 0
            cparams.n_threads = self.n_threads
            cparams.n_threads_batch = self.n_threads
            cparams.kv_unified = True
            cparams.no_perf = True
            ctx = llama.llama_init_from_model(model, cparams)
            if not ctx:
                raise ModelFileError(f"{gguf_path}: llama.cpp could not create a context")
            self._ctx = ctx
            self.n_ctx = int(llama.llama_n_ctx(ctx))
            self._mem = llama.llama_get_memory(ctx)
            self._batch = _Batch(n_batch)
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
        n = self._llama.llama_tokenize(self._vocab, raw, len(raw), buf, capacity, False, parse_special)
        if n < 0:
            capacity = -n
            buf = (self._llama.llama_token * capacity)()
            n = self._llama.llama_tokenize(
                self._vocab, raw, len(raw), buf, capacity, False, parse_special
            )
        return list(buf[:n])

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
        """Sum of log p(target token) for each job (None where llama.cpp failed on it).

        `on_done(i, value)` is called as each job finishes. With read_logits=False the same decodes
        run with the same logits requested and nothing is read (the benchmark's limit); the sums
        are then 0.0.
        """
        results: list[float | None] = [None] * len(jobs)

        def finish(i: int, value: float | None) -> None:
            results[i] = value
            if on_done is not None:
                on_done(i, value)

        failed = self._run(jobs, range(len(jobs)), finish, read_logits)
        for i in failed:
            self.stats.solo_retries += 1
            retry = self._run(jobs, [i], finish, read_logits)
            if retry:
                finish(i, None)
        return results

    def _run(
        self,
        jobs: Sequence[Job],
        order: Sequence[int],
        finish: Callable[[int, float | None], None],
        read_logits: bool,
    ) -> list[int]:
        """Decode the jobs in `order`, packed; returns those caught in a failed decode."""
        llama = self._llama
        s = self.settings
        batch = self._batch
        queue = deque(order)
        active: list[_Active] = []
        free_seqs = list(range(s.n_seq_max - 1, -1, -1))
        sums = np.zeros(len(jobs), dtype=np.float64)
        kv_used = 0
        failed: list[int] = []
        llama.llama_memory_clear(self._mem, True)
        while queue or active:
            batch.clear()
            rows = _Pending()
            n_out = 0
            for a in active:
                n_out += self._fill(batch, a, jobs[a.index], rows, n_out)
            while (
                queue
                and free_seqs
                and batch.n < batch.capacity
                and n_out < self.max_outputs
                and (not active or kv_used + len(jobs[queue[0]].tokens) <= s.kv_budget)
            ):
                a = _Active(queue.popleft(), free_seqs.pop())
                active.append(a)
                kv_used += len(jobs[a.index].tokens)
                n_out += self._fill(batch, a, jobs[a.index], rows, n_out)
            batch.struct.n_tokens = batch.n
            rc = llama.llama_decode(self._ctx, batch.struct) if batch.n else 0
            self.stats.decodes += 1
            self.stats.tokens += batch.n
            self.stats.outputs += n_out
            if rc != 0:
                self.stats.failures += 1
                failed.extend(a.index for a in active)
                if len(order) == 1:
                    break
                active.clear()
                free_seqs = list(range(s.n_seq_max - 1, -1, -1))
                kv_used = 0
                llama.llama_memory_clear(self._mem, True)
                continue
            if read_logits and n_out:
                self._accumulate(rows, sums)
            still: list[_Active] = []
            for a in active:
                job = jobs[a.index]
                if a.next_pos >= len(job.tokens) - 1:
                    llama.llama_memory_seq_rm(self._mem, a.seq, -1, -1)
                    free_seqs.append(a.seq)
                    kv_used -= len(job.tokens)
                    finish(a.index, float(sums[a.index]))
                else:
                    still.append(a)
            active = still
        llama.llama_memory_clear(self._mem, True)
        return failed

    def _fill(self, batch: _Batch, a: _Active, job: Job, rows: _Pending, n_out: int) -> int:
        """Append as much of a job as fits the batch and the output budget; returns outputs added."""
        # The last token predicts nothing we score, so it is never decoded.
        end = len(job.tokens) - 1
        first_output = job.start - 1
        lo = a.next_pos
        room = batch.capacity - batch.n
        out_room = self.max_outputs - n_out
        hi = min(end, lo + room, max(lo, first_output) + out_room)
        if hi <= lo:
            return 0
        at = batch.n
        batch.add(a.seq, job.tokens[lo:hi], lo, first_output)
        out_lo = max(lo, first_output)
        added = max(0, hi - out_lo)
        if added:
            rows.jobs.extend([a.index] * added)
            rows.targets.extend(job.tokens[out_lo + 1 : hi + 1])
            rows.batch_index.extend(range(at + out_lo - lo, at + hi - lo))
        a.next_pos = hi
        return added

    def _accumulate(self, rows: _Pending, sums: npt.NDArray[np.float64]) -> None:
        """Add each output row's log p(target) to its job's sum."""
        llama = self._llama
        n = len(rows.batch_index)
        base = ctypes.cast(llama.llama_get_logits(self._ctx), ctypes.c_void_p).value
        if not base:
            raise DecodeError("llama.cpp returned no logits")
        row_bytes = 4 * self.n_vocab
        index = np.empty(n, dtype=np.int64)
        for k, i in enumerate(rows.batch_index):
            addr = ctypes.cast(llama.llama_get_logits_ith(self._ctx, i), ctypes.c_void_p).value
            if not addr:
                raise DecodeError(f"llama.cpp has no logits for batch row {i}")
            index[k] = (addr - base) // row_bytes
        span = int(index.max()) + 1
        buffer = ctypes.cast(base, ctypes.POINTER(ctypes.c_float))
        logits = np.ctypeslib.as_array(buffer, shape=(span, self.n_vocab))
        targets = np.asarray(rows.targets, dtype=np.int64)
        logp = np.empty(n, dtype=np.float64)
        tasks = [
            self._pool.submit(_log_softmax_rows, logits, index, targets, logp, k, k + _ROWS_PER_TASK)
            for k in range(0, n, _ROWS_PER_TASK)
        ]
        for task in tasks:
            task.result()
        np.add.at(sums, np.asarray(rows.jobs, dtype=np.int64), logp)

    def close(self) -> None:
        """Free the context and the model (idempotent)."""
        llama = self._llama
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=True)
            self._pool = None
        if self._ctx:
            llama.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            llama.llama_model_free(self._model)
            self._model = None


def _log_softmax_rows(
    logits: npt.NDArray[np.float32],
    index: npt.NDArray[np.int64],
    targets: npt.NDArray[np.int64],
    out: npt.NDArray[np.float64],
    lo: int,
    hi: int,
) -> None:
    """out[k] = log softmax(logits[index[k]])[targets[k]] for k in lo..hi, in place in the rows."""
    for k in range(lo, min(hi, len(index))):
        row = logits[index[k]]
        picked = float(row[targets[k]])
        top = float(row.max())
        if abs(top) > _EXP_SAFE:
            np.subtract(row, np.float32(top), out=row)
            shift = top
        else:
            shift = 0.0
        # llama.cpp overwrites the buffer on the next decode, so the row is used as scratch.
        np.exp(row, out=row)
        out[k] = picked - shift - float(np.log(row.sum(dtype=np.float32), dtype=np.float64))
