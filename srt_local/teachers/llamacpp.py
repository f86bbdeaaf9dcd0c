"""An embedded teacher: a GGUF chat model run by llama.cpp in this process.

The model's own chat template (from the GGUF) formats the messages; json mode constrains decoding
with a grammar built from the reply's JSON schema. Generation runs in a worker thread so the event
loop stays free, and a lock guarantees the Llama object is never used by two threads at once.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srt_local.config import TeacherSpec
from srt_local.model_files import file_sha256, resolve_gguf
from srt_local.prompts import Prompt
from srt_local.teachers.base import TeacherError
from srt_local.teachers.chat import ChatTeacher, Generation

if TYPE_CHECKING:
    from llama_cpp import Llama


class _PastDeadline(Exception):
    """Raised from inside generation when the request's time limit has passed."""


def default_threads() -> int:
    """The CPUs this process may use (llama.cpp gains nothing from more threads than that)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


class LlamaCppTeacher(ChatTeacher):
    """Reflections from a GGUF chat model run by llama-cpp-python, one at a time."""

    backend = "llamacpp"

    def __init__(self, spec: TeacherSpec, llama: Llama, path: Path, sha256: str) -> None:
        super().__init__(spec, path.name, sha256, None, concurrency=1)
        self.path = path
        self._llama: Llama | None = llama
        self._lock = threading.Lock()
        self._slots = asyncio.Semaphore(1)

    @classmethod
    async def open(cls, spec: TeacherSpec) -> LlamaCppTeacher:
        """Find the GGUF, fingerprint it and load it (in a worker thread)."""
        path = resolve_gguf(spec.path, spec.package)
        sha256 = await asyncio.to_thread(file_sha256, path)
        llama = await asyncio.to_thread(_load, path, spec)
        return cls(spec, llama, path, sha256)

    async def aclose(self) -> None:
        with self._lock:
            if self._llama is not None:
                self._llama.close()
                self._llama = None

    async def _send(self, prompt: Prompt, options: dict[str, Any]) -> Generation:
        async with self._slots:
            return await asyncio.to_thread(self._complete, prompt, options)

    def _complete(self, prompt: Prompt, options: dict[str, Any]) -> Generation:
        from llama_cpp import LogitsProcessorList

        deadline = time.monotonic() + self.spec.timeout

        def stop_at_deadline(_ids: Any, scores: Any) -> Any:
            if time.monotonic() > deadline:
                raise _PastDeadline
            return scores

        kwargs: dict[str, Any] = {
            "temperature": options["temperature"],
            "seed": options["seed"],
            "max_tokens": options["num_predict"],
        }
        for ours, theirs in (
            ("top_p", "top_p"),
            ("top_k", "top_k"),
            ("repeat_penalty", "repeat_penalty"),
        ):
            if ours in options:
                kwargs[theirs] = options[ours]
        if prompt.schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": prompt.schema}
        with self._lock:
            if self._llama is None:
                raise TeacherError(f"the embedded teacher {self.name!r} is closed")
            n_ctx = self._llama.n_ctx()
            started = time.perf_counter()
            try:
                out: Any = self._llama.create_chat_completion(
                    messages=prompt.messages,  # type: ignore[arg-type]
                    logits_processor=LogitsProcessorList([stop_at_deadline]),
                    **kwargs,
                )
            except _PastDeadline:
                return Generation(
                    error_kind="timeout",
                    error_message=f"no complete reply within {self.spec.timeout:g} s",
                )
            except ValueError as exc:
                kind = "prompt_too_long" if "context window" in str(exc) else "llama_error"
                return Generation(error_kind=kind, error_message=str(exc))
            elapsed_ms = (time.perf_counter() - started) * 1000
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        prompt_tokens = usage.get("prompt_tokens")
        completion_tokens = usage.get("completion_tokens")
        gen = Generation(
            text=choice["message"].get("content") or "",
            hit_limit=choice.get("finish_reason") == "length",
            prompt_tokens=prompt_tokens,
            prompt_eval_count=prompt_tokens,
            prompt_truncated=False,  # llama.cpp refuses a prompt longer than its context
            eval_count=completion_tokens,
            total_duration_ms=elapsed_ms,
        )
        if (
            gen.hit_limit
            and prompt_tokens is not None
            and completion_tokens is not None
            and prompt_tokens + completion_tokens >= n_ctx
        ):
            # The context filled up before num_predict: a re-ask would be cut the same way.
            gen.error_kind = "context_full"
            gen.error_message = (
                f"the prompt ({prompt_tokens} tokens) left too little of n_ctx={n_ctx} for "
                "the reply; raise num_ctx"
            )
        return gen


def _load(path: Path, spec: TeacherSpec) -> Llama:
    from llama_cpp import Llama

    threads = spec.n_threads or default_threads()
    try:
        return Llama(
            model_path=str(path),
            n_ctx=spec.options.num_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            n_gpu_layers=spec.n_gpu_layers,
            seed=spec.options.seed,
            verbose=False,
        )
    except (ValueError, RuntimeError) as exc:
        raise TeacherError(f"{path}: llama.cpp cannot load this model: {exc}") from None
