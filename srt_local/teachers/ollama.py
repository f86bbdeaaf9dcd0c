"""A teacher served by Ollama, through the official `ollama` AsyncClient.

Requests run `concurrency` at a time (default: what the server runs in parallel), each with a
total time limit (the client has none by default). Transient failures (timeouts, 5xx, 503 queue
full, a stream cut mid-way) are returned as retryable; a model that is not pulled and a server that
does not answer become TeacherError messages that say what to run.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from typing import Any

import httpx
import pydantic
from ollama import AsyncClient, ChatResponse, ResponseError

from srt_local.config import TeacherSpec
from srt_local.prompts import Prompt, estimate_tokens
from srt_local.teachers.base import TeacherError
from srt_local.teachers.chat import ChatTeacher, Generation, RetryPolicy
from srt_local.teachers.registry import ServerCheck

# Ollama's own default for OLLAMA_NUM_PARALLEL is 4 or 1 depending on free memory; 4 keeps a
# server that runs 4 busy and only queues on one that runs 1.
DEFAULT_PARALLEL = 4
CONNECT_TIMEOUT = 10.0


def default_concurrency() -> int:
    """OLLAMA_NUM_PARALLEL if set (client and server usually share the environment), else 4."""
    try:
        value = int(os.environ.get("OLLAMA_NUM_PARALLEL", ""))
    except ValueError:
        value = 0
    return value if value > 0 else DEFAULT_PARALLEL


def unreachable_message(host: str) -> str:
    return (
        f"no Ollama server answers at {host}: start it with `ollama serve` (or open the Ollama "
        "app), or point the teacher at another server with OLLAMA_HOST or `host` in models.toml"
    )


def tagged(model: str) -> str:
    """Ollama's rule: a model named without a tag is its `:latest` (a registry's port is no tag)."""
    return model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"


def not_pulled_message(host: str, model: str) -> str:
    return f"the Ollama server at {host} has no model {model!r}: pull it with `ollama pull {model}`"


class ModelCheckError(TeacherError):
    """The server cannot serve the model; `state` says why in a word (a ServerCheck state)."""

    def __init__(self, message: str, state: str) -> None:
        super().__init__(message)
        self.state = state


class _StreamCut(Exception):
    """The stream ended without its final (done) message."""


class OllamaTeacher(ChatTeacher):
    """Reflections from a model served by Ollama."""

    backend = "ollama"

    def __init__(
        self,
        spec: TeacherSpec,
        client: AsyncClient,
        digest: str | None,
        details: dict[str, Any],
        concurrency: int,
        stream: bool = True,
        retry: RetryPolicy | None = None,
    ) -> None:
        assert spec.model is not None
        super().__init__(spec, spec.model, digest, spec.resolved_host, concurrency, retry)
        self.details = details
        self.stream = stream
        self._client = client
        self._slots = asyncio.Semaphore(self.concurrency)

    @classmethod
    async def open(
        cls,
        spec: TeacherSpec,
        concurrency: int | None = None,
        stream: bool = True,
        retry: RetryPolicy | None = None,
    ) -> OllamaTeacher:
        """Connect, check the model is pulled and read its digest and details once."""
        client = AsyncClient(
            host=spec.resolved_host, timeout=httpx.Timeout(spec.timeout, connect=CONNECT_TIMEOUT)
        )
        try:
            digest, details = await inspect_model(client, spec)
        except BaseException:
            await client.close()
            raise
        n = concurrency or spec.concurrency or default_concurrency()
        return cls(spec, client, digest, details, n, stream, retry)

    async def aclose(self) -> None:
        await self._client.close()

    async def _send(self, prompt: Prompt, options: dict[str, Any]) -> Generation:
        async with self._slots:
            started = datetime.now(UTC)
            gen = await self._request(prompt, options)
        gen.started_at = started
        return gen

    async def _request(self, prompt: Prompt, options: dict[str, Any]) -> Generation:
        ours = estimate_tokens(prompt.messages)
        timeout = self.spec.timeout
        try:
            text, final = await asyncio.wait_for(self._chat(prompt, options), timeout)
        except (TimeoutError, httpx.TimeoutException):
            return _failed("timeout", f"no complete reply within {timeout:g} s", ours)
        except ResponseError as exc:
            return self._response_error(exc, ours)
        except (ConnectionError, httpx.ConnectError):
            gen = _failed("unreachable", unreachable_message(self.host or ""), ours)
            gen.fatal = gen.error_message
            return gen
        except (_StreamCut, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            return _failed("stream_cut", f"the reply was cut off: {exc}", ours)
        except (json.JSONDecodeError, pydantic.ValidationError) as exc:
            return _failed("bad_response", f"the server sent something not Ollama's: {exc}", ours)
        except httpx.HTTPError as exc:
            return _failed("http_error", f"{type(exc).__name__}: {exc}", ours)
        return self._generation(text, final, ours, options)

    async def _chat(self, prompt: Prompt, options: dict[str, Any]) -> tuple[str, ChatResponse]:
        assert self.model is not None
        if not self.stream:
            reply = await self._client.chat(
                model=self.model,
                messages=prompt.messages,
                format=prompt.schema,
                options=options,
                keep_alive=self.spec.keep_alive,
                stream=False,
            )
            return reply.message.content or "", reply
        parts: list[str] = []
        final: ChatResponse | None = None
        stream = await self._client.chat(
            model=self.model,
            messages=prompt.messages,
            format=prompt.schema,
            options=options,
            keep_alive=self.spec.keep_alive,
            stream=True,
        )
        async for part in stream:
            parts.append(part.message.content or "")
            if part.done:
                final = part
        if final is None:
            raise _StreamCut(f"the stream ended after {len(parts)} parts without its final message")
        return "".join(parts), final

    def _generation(
        self, text: str, final: ChatResponse, ours: int, options: dict[str, Any]
    ) -> Generation:
        num_ctx = int(options["num_ctx"])
        counted = final.prompt_eval_count
        # Ollama truncates silently. Its count falls short of ours when a cached prefix was reused,
        # so only a big shortfall on a prompt that fills half the window counts as truncation.
        truncated = ours > num_ctx or (
            counted is not None
            and (counted >= num_ctx or (counted < ours / 2 and ours > num_ctx / 2))
        )
        return Generation(
            text=text,
            hit_limit=final.done_reason == "length",
            prompt_tokens=ours,
            prompt_eval_count=counted,
            prompt_truncated=truncated,
            eval_count=final.eval_count,
            total_duration_ms=_ms(final.total_duration),
            load_duration_ms=_ms(final.load_duration),
            prompt_eval_duration_ms=_ms(final.prompt_eval_duration),
            eval_duration_ms=_ms(final.eval_duration),
        )

    def _response_error(self, exc: ResponseError, ours: int) -> Generation:
        host = self.host or ""
        code = exc.status_code
        message = f"{exc.error} (HTTP {code})" if code > 0 else str(exc.error)
        if code == 404:
            gen = _failed("model_not_found", message, ours, retryable=False)
            gen.fatal = not_pulled_message(host, self.model)
            return gen
        if code == 503:
            return _failed("busy", message, ours)
        if code == 429 or code >= 500:
            return _failed("server_error", message, ours)
        if code == -1:
            return _failed("stream_error", f"error in the stream: {exc.error}", ours)
        gen = _failed("rejected", message, ours, retryable=False)
        gen.fatal = f"the Ollama server at {host} rejected the request: {message}"
        return gen


async def inspect_model(
    client: AsyncClient, spec: TeacherSpec
) -> tuple[str | None, dict[str, Any]]:
    """The model's digest (from /api/tags) and details (from /api/show); TeacherError with what to
    do when the server does not answer or does not have the model."""
    host = spec.resolved_host
    model = spec.model or ""
    try:
        tags = await client.list()
        entry = next((m for m in tags.models if m.model and tagged(m.model) == tagged(model)), None)
        if entry is None:
            raise ModelCheckError(not_pulled_message(host, model), "not pulled")
        shown = await client.show(model)
    except (ConnectionError, httpx.ConnectError):
        raise ModelCheckError(unreachable_message(host), "unreachable") from None
    except httpx.TimeoutException:
        raise ModelCheckError(
            f"the Ollama server at {host} did not answer in time", "unreachable"
        ) from None
    except ResponseError as exc:
        if exc.status_code == 404:
            raise ModelCheckError(not_pulled_message(host, model), "not pulled") from None
        raise ModelCheckError(
            f"the Ollama server at {host} answered with an error: {exc}", "error"
        ) from None
    except (httpx.HTTPError, json.JSONDecodeError, pydantic.ValidationError) as exc:
        raise ModelCheckError(
            f"the server at {host} does not answer like Ollama: {exc}", "error"
        ) from None
    details: dict[str, Any] = {}
    if shown.details is not None:
        details.update(shown.details.model_dump(exclude_none=True))
    for key, value in (shown.modelinfo or {}).items():
        if key.endswith(".context_length"):
            details["context_length"] = value
    return entry.digest, details


async def open_backend(spec: TeacherSpec, concurrency: int | None) -> OllamaTeacher:
    """The registry's entry point."""
    return await OllamaTeacher.open(spec, concurrency=concurrency)


async def check_server(spec: TeacherSpec, timeout: float) -> ServerCheck:
    """Is the server up and the model pulled? Asked once, with `timeout` for the whole answer."""
    host = spec.resolved_host
    model = spec.model or ""
    client = AsyncClient(host=host, timeout=httpx.Timeout(timeout))
    try:
        await inspect_model(client, spec)
    except ModelCheckError as exc:
        return ServerCheck(False, exc.state, str(exc))
    finally:
        await client.close()
    return ServerCheck(
        True, "pulled", f"{spec.name}: {model} is pulled on the Ollama server at {host}"
    )


def _failed(kind: str, message: str, ours: int, retryable: bool = True) -> Generation:
    return Generation(
        error_kind=kind, error_message=message, retryable=retryable, prompt_tokens=ours
    )


def _ms(ns: int | None) -> float | None:
    return None if ns is None else ns / 1e6
