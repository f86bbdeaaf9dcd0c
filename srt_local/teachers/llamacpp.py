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
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from srt_local.config import TeacherSpec
from srt_local.model_files import file_sha256, read_gguf_info, resolve_gguf
from srt_local.prompts import Prompt
from srt_local.teachers.base import TeacherError
from srt_local.teachers.chat import ChatTeacher, Generation

if TYPE_CHECKING:
    from llama_cpp import Llama


def default_threads() -> int:
    """The CPUs this process may use (llama.cpp gains nothing from more threads than that)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


class LlamaCppTeacher(ChatTeacher):
    """Reflections from a GGUF chat model run by llama-cpp-python, one at a time."""

    backend = "llamacpp"
    # llama-cpp-python's default (1.0) lets a small model loop; 1.1 is Ollama's default.
    default_options: ClassVar[dict[str, Any]] = {"repeat_penalty": 1.1}

    def __init__(self, spec: TeacherSpec, llama: Llama, path: Path, sha256: str) -> None:
        super().__init__(spec, path.name, sha256, None, concurrency=1)
        self.path = path
        self._llama: Llama | None = llama
        self._lock = threading.Lock()
        self._slots = asyncio.Semaphore(1)
        self._formatter = _formatter(llama)

    @classmethod
    async def open(cls, spec: TeacherSpec) -> LlamaCppTeacher:
        """Find the GGUF, fingerprint it and load it (in a worker thread)."""
        path = resolve_gguf(spec.path, spec.package)
        sha256 = await asyncio.to_thread(file_sha256, path)
        llama = await asyncio.to_thread(_load, path, spec)
        return cls(spec, llama, path, sha256)

    def json_budget(self, options: dict[str, Any]) -> int | None:
        """About 3 characters a token, less room for the JSON's own tokens: a bounded reply
        closes its JSON within num_predict, where an unbounded string could run on."""
        return max(64, 3 * (int(options["num_predict"]) - 32))

    async def count_messages(self, messages: list[dict[str, str]]) -> int:
        """Exact: the GGUF's template and tokenizer (an estimate if the GGUF has no template)."""
        counted = await asyncio.to_thread(self._locked_count, messages)
        return counted if counted is not None else await super().count_messages(messages)

    async def count_text(self, text: str) -> int:
        def count() -> int:
            with self._lock:
                if self._llama is None:
                    raise TeacherError(f"the embedded teacher {self.name!r} is closed")
                return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False))

        return await asyncio.to_thread(count)

    def _locked_count(self, messages: list[dict[str, str]]) -> int | None:
        with self._lock:
            if self._llama is None:
                raise TeacherError(f"the embedded teacher {self.name!r} is closed")
            return self._count_prompt(self._llama, messages)

    async def aclose(self) -> None:
        # In a thread: closing waits (on the lock) for a generation in progress to end.
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            if self._llama is not None:
                self._llama.close()
                self._llama = None

    async def _send(self, prompt: Prompt, options: dict[str, Any]) -> Generation:
        async with self._slots:
            return await asyncio.to_thread(self._complete, prompt, options)

    def _complete(self, prompt: Prompt, options: dict[str, Any]) -> Generation:
        kwargs: dict[str, Any] = {
            "temperature": options["temperature"],
            "seed": options["seed"],
            "max_tokens": options["num_predict"],
        }
        for key in ("top_p", "top_k", "repeat_penalty"):
            if key in options:
                kwargs[key] = options[key]
        if prompt.schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": prompt.schema}
        with self._lock:
            llama = self._llama
            if llama is None:
                raise TeacherError(f"the embedded teacher {self.name!r} is closed")
            started_at = datetime.now(UTC)
            started = time.perf_counter()
            deadline = time.monotonic() + self.spec.timeout
            prompt_tokens = self._count_prompt(llama, prompt.messages)
            parts: list[str] = []
            finish = None
            # Streamed, so the time limit can stop a generation between two tokens.
            stream: Any = llama.create_chat_completion(
                messages=prompt.messages,  # type: ignore[arg-type]
                stream=True,
                **kwargs,
            )
            try:
                for chunk in stream:
                    choice = chunk["choices"][0]
                    if choice["delta"].get("content"):
                        parts.append(choice["delta"]["content"])
                    finish = choice.get("finish_reason") or finish
                    if finish is None and time.monotonic() > deadline:
                        stream.close()
                        return Generation(
                            started_at=started_at,
                            text="".join(parts),
                            prompt_tokens=prompt_tokens,
                            eval_count=len(parts),
                            error_kind="timeout",
                            error_message=f"no complete reply within {self.spec.timeout:g} s",
                        )
            except ValueError as exc:
                kind = "prompt_too_long" if "context window" in str(exc) else "llama_error"
                return Generation(
                    started_at=started_at,
                    prompt_tokens=prompt_tokens,
                    error_kind=kind,
                    error_message=str(exc),
                )
            elapsed_ms = (time.perf_counter() - started) * 1000
            n_ctx = llama.n_ctx()
        gen = Generation(
            started_at=started_at,
            text="".join(parts),
            hit_limit=finish == "length",
            prompt_tokens=prompt_tokens,
            prompt_eval_count=prompt_tokens,
            prompt_truncated=False,  # llama.cpp refuses a prompt longer than its context
            eval_count=len(parts),  # one streamed piece per token
            total_duration_ms=elapsed_ms,
        )
        if gen.hit_limit and prompt_tokens is not None and prompt_tokens + len(parts) >= n_ctx:
            # The context filled up before num_predict: a re-ask would be cut the same way.
            gen.error_kind = "context_full"
            gen.error_message = (
                f"the prompt ({prompt_tokens} tokens) left too little of n_ctx={n_ctx} for "
                "the reply; raise num_ctx"
            )
        return gen

    def _count_prompt(self, llama: Llama, messages: list[dict[str, str]]) -> int | None:
        """The prompt's tokens, rendered by the GGUF's template as llama-cpp-python renders it."""
        if self._formatter is None:
            return None
        rendered = self._formatter(messages=messages)  # type: ignore[arg-type]
        tokens = llama.tokenize(
            rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True
        )
        return len(tokens)


def _load(path: Path, spec: TeacherSpec) -> Llama:
    # ggml's OpenMP threads spin while they wait for each other; when the cores are shared (the
    # student scoring beside us, other work) a spinning thread steals the core its partner needs
    # and a token takes 10-20x longer. Sleeping waits cost little. Only applies if nothing has
    # loaded llama.cpp in this process yet.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from llama_cpp import Llama

    threads = spec.n_threads or default_threads()
    # The GGUF's own template, not a built-in format llama-cpp-python may guess from it.
    chat_format = "chat_template.default" if read_gguf_info(path).has_chat_template else None
    try:
        return Llama(
            model_path=str(path),
            chat_format=chat_format,
            n_ctx=spec.options.num_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            n_gpu_layers=spec.n_gpu_layers,
            seed=spec.options.seed,
            verbose=False,
        )
    except (ValueError, RuntimeError) as exc:
        raise TeacherError(f"{path}: llama.cpp cannot load this model: {exc}") from None


def _formatter(llama: Llama) -> Any:
    """The GGUF's chat template as a formatter (to count prompts), or None if it has none."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        return None

    def text(token: int) -> str:
        return (
            llama.detokenize([token], special=True).decode("utf-8", "replace") if token >= 0 else ""
        )

    return Jinja2ChatFormatter(
        template=template,
        eos_token=text(llama.token_eos()),
        bos_token=text(llama.token_bos()),
        stop_token_ids=[llama.token_eos()],
    )


async def open_backend(spec: TeacherSpec, concurrency: int | None) -> LlamaCppTeacher:
    """The registry's entry point; an embedded model runs one call at a time, whatever is asked."""
    return await LlamaCppTeacher.open(spec)
