"""An embedded teacher: a GGUF chat model run by llama.cpp in this process.

The model's own chat template (from the GGUF) formats the messages; json mode constrains decoding
with a grammar built from the reply's JSON schema. Replies are written `concurrency` at once by a
BatchedDecoder (batched.py) in threads of its own, so the event loop stays free and each of the
model's contexts is only ever used by one thread.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from srt_local.config import TeacherSpec
from srt_local.model_files import file_sha256, read_gguf_info, resolve_gguf
from srt_local.prompts import Prompt
from srt_local.teachers.base import TeacherError
from srt_local.teachers.batched import (
    N_BATCH,
    BatchedDecoder,
    Completion,
    LanePlan,
    Request,
    plan_lanes,
)
from srt_local.teachers.chat import ChatTeacher, Generation, reply_too_long

# Sequences decoded at once when models.toml says 0: two per lane on a 2-core CPU.
DEFAULT_CONCURRENCY = 4

if TYPE_CHECKING:
    from llama_cpp import Llama


def default_threads() -> int:
    """The CPUs this process may use (llama.cpp gains nothing from more threads than that)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


class LlamaCppTeacher(ChatTeacher):
    """Reflections from a GGUF chat model run by llama-cpp-python, `concurrency` at once (each
    in its own sequence of a batched context, one context per CPU on a CPU: batched.py)."""

    backend = "llamacpp"
    # llama-cpp-python's default (1.0) lets a small model loop; 1.1 is Ollama's default.
    default_options: ClassVar[dict[str, Any]] = {"repeat_penalty": 1.1}

    def __init__(
        self, spec: TeacherSpec, llama: Llama, path: Path, sha256: str, concurrency: int
    ) -> None:
        super().__init__(spec, path.name, sha256, None, concurrency=concurrency)
        self.path = path
        self._llama: Llama | None = llama
        self._formatter = _formatter(llama)
        self._decoder: BatchedDecoder | None = BatchedDecoder(
            llama, spec.options.num_ctx, _lane_plan(llama, spec, self.concurrency)
        )

    @classmethod
    async def open(cls, spec: TeacherSpec, concurrency: int | None = None) -> LlamaCppTeacher:
        """Find the GGUF, fingerprint it and load it (in a worker thread)."""
        path = resolve_gguf(spec.path, spec.package)
        n = concurrency or spec.concurrency or DEFAULT_CONCURRENCY
        sha256 = await asyncio.to_thread(file_sha256, path)
        llama = await asyncio.to_thread(_load, path, spec)
        try:
            return await asyncio.to_thread(cls, spec, llama, path, sha256, n)
        except BaseException:
            llama.close()
            raise

    def json_budget(self, options: dict[str, Any]) -> int | None:
        """About 3 characters a token, less room for the JSON's own tokens: a bounded reply
        closes its JSON within num_predict, where an unbounded string could run on."""
        return max(64, 3 * (int(options["num_predict"]) - 32))

    async def count_messages(self, messages: list[dict[str, str]]) -> int:
        """Exact: the GGUF's template and tokenizer (an estimate if the GGUF has no template)."""
        llama = self._open_llama()
        if self._formatter is None:
            return await super().count_messages(messages)
        tokens, _stop = await asyncio.to_thread(self._render(llama, messages))
        return len(tokens)

    async def count_text(self, text: str) -> int:
        llama = self._open_llama()
        tokens = await asyncio.to_thread(llama.tokenize, text.encode("utf-8"), False)
        return len(tokens)

    def _open_llama(self) -> Llama:
        if self._llama is None:
            raise TeacherError(f"the embedded teacher {self.name!r} is closed")
        return self._llama

    async def aclose(self) -> None:
        # In a thread: closing waits for the decoder to leave its current step.
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None
        if self._llama is not None:
            self._llama.close()
            self._llama = None

    async def _send(self, prompt: Prompt, options: dict[str, Any]) -> Generation:
        decoder, llama = self._decoder, self._llama
        if decoder is None or llama is None:
            raise TeacherError(f"the embedded teacher {self.name!r} is closed")
        rendered = self._render(llama, prompt.messages)
        tokens, stop = await asyncio.to_thread(rendered)
        request = Request(
            tokens=tokens,
            max_tokens=int(options["num_predict"]),
            temperature=float(options["temperature"]),
            seed=int(options["seed"]),
            repeat_penalty=float(options.get("repeat_penalty", 1.0)),
            top_k=options.get("top_k"),
            top_p=options.get("top_p"),
            schema=prompt.schema,
            stop=stop,
            timeout=self.spec.timeout,
            # A UTF-8 character is at most 4 bytes: past this the reply is surely over the limit.
            max_bytes=4 * self.reply_chars + 4,
        )
        try:
            future = decoder.submit(request)
        except RuntimeError as exc:
            raise TeacherError(f"the embedded teacher {self.name!r}: {exc}") from None
        try:
            done = await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            request.cancelled.set()  # the decoder drops the sequence at its next token
            raise
        return self._generation(done, len(tokens))

    def _render(self, llama: Llama, messages: list[dict[str, str]]) -> Any:
        """The prompt's tokens and stop strings, as llama-cpp-python's chat handler makes them."""

        def render() -> tuple[list[int], list[str]]:
            if self._formatter is None:
                raise TeacherError(f"{self.path}: the GGUF has no chat template")
            result = self._formatter(messages=messages)
            tokens = llama.tokenize(
                result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True
            )
            stop = result.stop if isinstance(result.stop, list) else [result.stop]
            return tokens, [s for s in stop if s]

        return render

    def _generation(self, done: Completion, prompt_tokens: int) -> Generation:
        gen = self._outcome(done, prompt_tokens)
        # The decoder's own clock: several sequences share it, so "now" here would overlap calls.
        gen.finished_at = done.started_at + timedelta(milliseconds=done.elapsed_ms)
        return gen

    def _outcome(self, done: Completion, prompt_tokens: int) -> Generation:
        n_ctx = self.spec.options.num_ctx
        if done.finish == "error":
            kind = "prompt_too_long" if "context window" in (done.error or "") else "llama_error"
            return Generation(
                started_at=done.started_at,
                prompt_tokens=prompt_tokens,
                error_kind=kind,
                error_message=done.error,
            )
        if done.finish == "too_long" or len(done.text) > self.reply_chars:
            # A token can be long: num_predict alone does not bound the characters.
            gen = reply_too_long(len(done.text), self.reply_chars, done.text)
            gen.started_at, gen.prompt_tokens, gen.eval_count = (
                done.started_at,
                prompt_tokens,
                done.n_tokens,
            )
            return gen
        gen = Generation(
            started_at=done.started_at,
            text=done.text,
            hit_limit=done.finish == "length",
            prompt_tokens=prompt_tokens,
            prompt_eval_count=prompt_tokens,
            prompt_truncated=False,  # llama.cpp refuses a prompt longer than its context
            eval_count=done.n_tokens,
            total_duration_ms=done.elapsed_ms,
        )
        if done.finish == "timeout":
            gen.error_kind = "timeout"
            gen.error_message = f"no complete reply within {self.spec.timeout:g} s"
        elif gen.hit_limit and prompt_tokens + done.n_tokens >= n_ctx:
            # The context filled up before num_predict: a re-ask would be cut the same way.
            gen.error_kind = "context_full"
            gen.error_message = (
                f"the prompt ({prompt_tokens} tokens) left too little of n_ctx={n_ctx} for "
                "the reply; raise num_ctx"
            )
        return gen


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
            # The replies are written in the BatchedDecoder's own context; this one only needs
            # to exist.
            n_ctx=N_BATCH,
            n_threads=threads,
            n_threads_batch=threads,
            n_gpu_layers=spec.n_gpu_layers,
            seed=spec.options.seed,
            verbose=False,
        )
    except (ValueError, RuntimeError) as exc:
        raise TeacherError(f"{path}: llama.cpp cannot load this model: {exc}") from None


def _lane_plan(llama: Llama, spec: TeacherSpec, concurrency: int) -> LanePlan:
    """Lanes by where the model runs: offloaded to a GPU, or on the CPU's cores."""
    import llama_cpp

    offloaded = spec.n_gpu_layers != 0 and bool(llama_cpp.llama_supports_gpu_offload())
    threads = spec.n_threads or default_threads()
    return plan_lanes(concurrency, threads, offloaded, llama._model.n_params())


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


async def open_backend(
    spec: TeacherSpec, concurrency: int | None, log: Callable[[str], None] | None = None
) -> LlamaCppTeacher:
    """The registry's entry point."""
    return await LlamaCppTeacher.open(spec, concurrency=concurrency)
