"""A teacher served by Ollama, spoken to over its HTTP API (POST /api/chat) with httpx.

What it does, and why (each point learned from Ollama's server source):
- Requests run `concurrency` at a time, default 1: Ollama serves OLLAMA_NUM_PARALLEL requests per
  model (default 1) and queues the rest, so more would only wait in the server's queue.
- Time limits: a connect timeout, a limit on the wait for the first piece of the reply
  (`first_token_timeout`: loading the model counts here), then one on each wait for the next
  piece (`timeout`); never one wall-clock limit that would count queueing. A request still
  waiting for its first piece after WAIT_NOTE_SECONDS says so in the log, so a run is never silent.
- A reply is read piece by piece and cut off past `reply_chars` characters (a line of the stream
  is bounded too), so a model or server that sends megabytes fails that sample alone, quickly.
- `think` is always sent (Ollama turns thinking on by default for models that can think); the
  thinking text and its token count are kept with the call.
- num_ctx is sized from the prompt and num_predict, never above the model's trained context
  (Ollama clamps it there) nor `max_num_ctx`; once raised it stays raised, since every change of
  num_ctx makes Ollama reload the model. A prompt that cannot fit fails its sample, unsent.
- Ollama cuts an over-long prompt silently (keeping a few tokens from the start and the tail) or,
  for models without context shift, answers 400: either fails that sample alone ("too_long").
- Text that arrived before a failure is kept with the failed call. Servers that only resemble
  Ollama (no final `message`, no `/api/show`) work, with a warning.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import httpx

from srt_local.config import TeacherSpec
from srt_local.ollama_host import OllamaHostError
from srt_local.ollama_probe import (
    ModelInfo,
    not_pulled_message,
    probe_server,
    unreachable_message,
)
from srt_local.prompts import Prompt, estimate_tokens
from srt_local.teachers.base import TeacherError
from srt_local.teachers.chat import ChatTeacher, Generation, RetryPolicy, reply_too_long
from srt_local.teachers.registry import ServerCheck

__all__ = [
    "DEFAULT_PARALLEL",
    "OllamaTeacher",
    "context_shift_cut",
    "default_concurrency",
    "not_pulled_message",
    "unreachable_message",
]

# Ollama's own default for OLLAMA_NUM_PARALLEL (envconfig): one request per model at a time.
DEFAULT_PARALLEL = 1
# Our prompt estimate is tokenizer-free; this margin (and the chat template's tokens) keeps a
# prompt that the estimate says fits from overflowing in the model's own tokens.
ESTIMATE_MARGIN = 1.15
TEMPLATE_TOKENS = 32
# A reply needs at least this much room, else the prompt is too long to be worth sending.
MIN_REPLY_TOKENS = 256
# Ollama's num_keep default (api.DefaultOptions), plus the BOS token most tokenizers add.
NUM_KEEP = (4, 5)
# A request with no reply yet after this long is noted in the log (a model loading takes minutes).
WAIT_NOTE_SECONDS = 15.0
# An error body is read up to this many bytes (its message is all that is kept).
ERROR_BODY_BYTES = 65536

_OUT_OF_MEMORY = re.compile(
    r"out of memory|cudaMalloc|failed to allocate|unable to allocate|insufficient memory|"
    r"not enough memory|requires more system memory|\bOOM\b",
    re.IGNORECASE,
)
_TOO_LONG = re.compile(
    r"longer than the context length|exceeds the context length|exceeds maximum context",
    re.IGNORECASE,
)


def default_concurrency() -> int:
    """OLLAMA_NUM_PARALLEL if set (client and server usually share the environment), else 1."""
    try:
        value = int(os.environ.get("OLLAMA_NUM_PARALLEL", ""))
    except ValueError:
        value = 0
    return value if value > 0 else DEFAULT_PARALLEL


def context_shift_cut(num_ctx: int, num_keep: int) -> int:
    """How many prompt tokens Ollama keeps when it cuts a prompt longer than num_ctx - 1 for a
    model with context shift: num_keep from the start, then the tail, leaving about half of the
    rest of the window free for the reply."""
    num_keep = max(0, min(num_keep, num_ctx - 1))
    return num_ctx - max((num_ctx - num_keep) // 2, 1)


class _StreamCut(Exception):
    """The stream ended without its final (done) message."""


class _ReplyTooLong(Exception):
    """The reply passed reply_chars characters (or one line of it passed its byte bound)."""

    def __init__(self, chars: int) -> None:
        super().__init__(chars)
        self.chars = chars


class _ServerSaid(Exception):
    """An HTTP error status, or an error line inside the stream (status -1)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _Received:
    """What a request has received so far; kept when the request fails half-way."""

    content: list[str] = field(default_factory=list)
    thinking: list[str] = field(default_factory=list)
    thinking_chunks: int = 0
    final: dict[str, Any] | None = None
    chars: int = 0  # of content and thinking
    first_piece: bool = False  # a line of the reply has arrived

    @property
    def text(self) -> str:
        return "".join(self.content)

    @property
    def thought(self) -> str | None:
        return "".join(self.thinking) or None


class OllamaTeacher(ChatTeacher):
    """Reflections from a model served by Ollama."""

    backend = "ollama"

    def __init__(
        self,
        spec: TeacherSpec,
        host: str,
        info: ModelInfo,
        concurrency: int,
        stream: bool = True,
        retry: RetryPolicy | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        assert spec.model is not None
        super().__init__(spec, spec.model, info.digest, host, concurrency, retry)
        self.info = info
        self.details: dict[str, Any] = dict(info.details)
        if info.context_length is not None:
            self.details["context_length"] = info.context_length
        self.stream = stream
        self.log = log or (lambda _line: None)
        self._warned: set[str] = set()
        self._noted_wait = False  # the log already says the server is silent
        trained = info.context_length or 0
        configured = int(self.base_options["num_ctx"])
        # Ollama clamps num_ctx to the trained context; asking for more only hides that.
        self.num_ctx = min(configured, trained) if trained else configured
        self.max_num_ctx = max(self.num_ctx, min(spec.max_num_ctx, trained or spec.max_num_ctx))
        # Reads are timed by _read (first piece, then each next piece), not by httpx.
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=spec.connect_timeout, read=None, write=spec.timeout, pool=None
            )
        )
        self._slots = asyncio.Semaphore(self.concurrency)

    @classmethod
    async def open(
        cls,
        spec: TeacherSpec,
        concurrency: int | None = None,
        stream: bool = True,
        retry: RetryPolicy | None = None,
        log: Callable[[str], None] | None = None,
    ) -> OllamaTeacher:
        """Check the server answers and has the model (its digest, trained context and
        capabilities are read once); TeacherError saying what to do when it cannot serve."""
        info, host, warnings = await inspect_model(spec)
        if spec.think is not False and info.can("thinking") is False:
            raise TeacherError(
                f"{spec.model} on {host} cannot think (capabilities: "
                f"{', '.join(info.capabilities or ()) or 'none'}): set think = false for "
                f"teacher {spec.name!r} in models.toml"
            )
        say = log or (lambda _line: None)
        for warning in warnings:
            say(f"warning: {warning}")
        n = concurrency or spec.concurrency or default_concurrency()
        return cls(spec, host, info, n, stream, retry, log)

    async def aclose(self) -> None:
        await self._client.aclose()

    def key_extra(self) -> dict[str, Any]:
        return {"think": self.spec.think}

    # ------------------------------------------------------------ one request

    async def _send(self, prompt: Prompt, options: dict[str, Any]) -> Generation:
        ours = estimate_tokens(prompt.messages)
        sized = self._size(ours, options)
        if isinstance(sized, Generation):
            return sized
        async with self._slots:
            started = datetime.now(UTC)
            gen = await self._request(prompt, sized, ours)
        gen.started_at = started
        gen.options = sized
        return gen

    def _size(self, ours: int, options: dict[str, Any]) -> dict[str, Any] | Generation:
        """The options with num_ctx and num_predict fitted to this prompt, or a too_long failure."""
        need = int(ours * ESTIMATE_MARGIN) + TEMPLATE_TOKENS
        num_predict = int(options["num_predict"])
        if need + min(num_predict, MIN_REPLY_TOKENS) > self.max_num_ctx:
            gen = _failed(
                "prompt_too_long",
                f"the prompt (about {ours} tokens) does not fit the largest context srt may use "
                f"({self.max_num_ctx} tokens: {self._limit_reason()}) with room for a reply",
                ours,
                retryable=False,
            )
            gen.options = dict(options)
            return gen
        num_ctx = self.num_ctx
        while need + num_predict > num_ctx and num_ctx < self.max_num_ctx:
            num_ctx = min(num_ctx * 2, self.max_num_ctx)
        self.num_ctx = num_ctx  # sticky: a smaller num_ctx later would reload the model again
        return {**options, "num_ctx": num_ctx, "num_predict": min(num_predict, num_ctx - need)}

    def context_budget(self) -> int:
        # num_ctx grows to fit a long prompt (`_size`): trim only beyond what it can reach.
        return self.max_num_ctx

    def _limit_reason(self) -> str:
        trained = self.info.context_length
        if trained and trained <= self.spec.max_num_ctx:
            return "the model's trained context, from /api/show"
        return f"max_num_ctx of teacher {self.name!r}; raise it in models.toml if memory allows"

    def _body(self, prompt: Prompt, options: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": prompt.messages,
            "stream": self.stream,
            "think": self.spec.think,
            "options": options,
        }
        if prompt.schema is not None:
            body["format"] = prompt.schema
        if self.spec.keep_alive is not None:
            body["keep_alive"] = self.spec.keep_alive
        return body

    async def _request(self, prompt: Prompt, options: dict[str, Any], ours: int) -> Generation:
        got = _Received()
        url = f"{self.host}/api/chat"
        body = self._body(prompt, options)
        note = asyncio.create_task(self._note_silence(got))
        try:
            await self._read(url, body, got)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            return _failed("unreachable", unreachable_message(self.host or ""), ours)
        except TimeoutError:
            if got.first_piece:
                gen = _failed(
                    "timeout", f"no next part of the reply within {self.spec.timeout:g} s", ours
                )
            else:
                gen = _failed(
                    "no_reply",
                    f"{self.model} at {self.host} sent no reply within first_token_timeout = "
                    f"{self.spec.first_token_timeout:g} s of the request",
                    ours,
                )
            return _keep(gen, got)
        except _ReplyTooLong as exc:
            gen = reply_too_long(exc.chars, self.reply_chars, got.text)
            gen.prompt_tokens = ours
            gen.thinking = (got.thought or "")[: self.reply_chars] or None
            return gen
        except httpx.TimeoutException:
            what = "the next part of the reply" if got.content or got.thinking else "a reply"
            gen = _failed("timeout", f"no {what} within {self.spec.timeout:g} s", ours)
            return _keep(gen, got)
        except _ServerSaid as exc:
            return _keep(self._server_said(exc, ours), got)
        except (_StreamCut, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            return _keep(_failed("stream_cut", f"the reply was cut off: {exc}", ours), got)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            gen = _failed("bad_response", f"the server sent a line that is not JSON: {exc}", ours)
            return _keep(gen, got)
        except httpx.HTTPError as exc:
            return _keep(_failed("http_error", f"{type(exc).__name__}: {exc}", ours), got)
        finally:
            note.cancel()
        assert got.final is not None
        return self._generation(got, ours, options)

    async def _note_silence(self, got: _Received) -> None:
        """Say once, while the server stays silent, that a request is still waiting for it."""
        await asyncio.sleep(WAIT_NOTE_SECONDS)
        if not got.first_piece and not self._noted_wait:
            self._noted_wait = True
            self.log(
                f"waiting for {self.model} at {self.host}: no reply yet after "
                f"{WAIT_NOTE_SECONDS:g} s (the server may be loading the model)"
            )

    async def _read(self, url: str, body: dict[str, Any], got: _Received) -> None:
        """Send the request and read its reply line by line (a whole reply is one line), within
        first_token_timeout for the first line and `timeout` for each next one; TimeoutError
        when a wait runs out, _ReplyTooLong past reply_chars."""
        loop = asyncio.get_running_loop()
        # A JSON line holds its text escaped: up to 6 bytes a character (\uXXXX), plus fields.
        line_bytes = 6 * self.reply_chars + ERROR_BODY_BYTES
        async with asyncio.timeout(self.spec.first_token_timeout) as limit:
            async with self._client.stream("POST", url, json=body) as reply:
                if reply.status_code != 200:
                    raise _ServerSaid(reply.status_code, await _error_body(reply))
                pending = b""
                async for data in reply.aiter_bytes():
                    if not got.first_piece:
                        got.first_piece = True
                        self._noted_wait = False
                    limit.reschedule(loop.time() + self.spec.timeout)
                    pending += data
                    if self.stream:  # one JSON object a line; a whole reply is one object
                        *lines, pending = pending.split(b"\n")
                        for line in lines:
                            self._line(line, got)
                    if len(pending) > line_bytes:
                        raise _ReplyTooLong(got.chars + len(pending))
                self._line(pending, got)
        if got.final is None:
            if not self.stream:
                raise _StreamCut("the reply is not marked done")
            parts = len(got.content) + got.thinking_chunks
            raise _StreamCut(f"the stream ended after {parts} parts without its final message")

    def _line(self, line: bytes, got: _Received) -> None:
        if line.strip():
            self._take(json.loads(line), got)
            if got.chars > self.reply_chars:
                raise _ReplyTooLong(got.chars)

    def _take(self, part: Any, got: _Received) -> None:
        """Add one streamed object (or the whole reply) to what was received."""
        if not isinstance(part, dict):
            raise json.JSONDecodeError("expected a JSON object", str(part)[:80], 0)
        if part.get("error"):
            raise _ServerSaid(-1, str(part["error"]))
        message = part.get("message")
        if isinstance(message, dict):
            if message.get("content"):
                got.content.append(str(message["content"]))
                got.chars += len(got.content[-1])
            if message.get("thinking"):
                got.thinking.append(str(message["thinking"]))
                got.thinking_chunks += 1
                got.chars += len(got.thinking[-1])
        elif isinstance(part.get("response"), str):
            got.content.append(part["response"])  # a server answering in /api/generate's shape
            got.chars += len(part["response"])
        elif not part.get("done"):
            self._warn_once(
                "no-message", f"the server at {self.host} streams parts without a 'message'"
            )
        if part.get("done"):
            if message is None and "response" not in part:
                self._warn_once(
                    "final-no-message",
                    f"the server at {self.host} ends its replies without a 'message' (not as "
                    "Ollama does); the text streamed before it is used",
                )
            got.final = part

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.log(f"warning: {message}")

    def _generation(self, got: _Received, ours: int, options: dict[str, Any]) -> Generation:
        final = got.final or {}
        num_ctx = int(options["num_ctx"])
        counted = _int(final.get("prompt_eval_count"))
        truncated = _truncated(ours, counted, num_ctx)
        thinking = got.thought
        thinking_tokens = None
        if thinking is not None:
            # Ollama streams about one token per part; a whole reply only has the text.
            chunks = got.thinking_chunks if self.stream and got.thinking_chunks > 1 else 0
            thinking_tokens = chunks or estimate_tokens([{"content": thinking}]) - 4
        gen = Generation(
            text=got.text,
            hit_limit=final.get("done_reason") == "length",
            prompt_tokens=ours,
            prompt_eval_count=counted,
            prompt_truncated=truncated,
            eval_count=_int(final.get("eval_count")),
            total_duration_ms=_ms(final.get("total_duration")),
            load_duration_ms=_ms(final.get("load_duration")),
            prompt_eval_duration_ms=_ms(final.get("prompt_eval_duration")),
            eval_duration_ms=_ms(final.get("eval_duration")),
            thinking=thinking,
            thinking_tokens=thinking_tokens,
        )
        if truncated:
            gen.error_kind = "prompt_truncated"
            gen.error_message = (
                f"the server cut the prompt to fit num_ctx={num_ctx}: it read {counted} tokens "
                f"of a prompt of about {ours}; the reply is about a cut sample"
            )
        return gen

    def _server_said(self, exc: _ServerSaid, ours: int) -> Generation:
        host = self.host or ""
        code = exc.status
        message = f"{exc.message} (HTTP {code})" if code > 0 else exc.message
        if code == -1:
            gen = _failed("stream_error", f"error in the stream: {exc.message}", ours)
        elif code == 404:
            gen = _failed("model_not_found", message, ours, retryable=False)
            gen.fatal = not_pulled_message(host, self.model)
        elif code == 503:
            gen = _failed("busy", message, ours)
        elif code == 429 or code >= 500:
            gen = _failed("server_error", message, ours)
        elif code == 400 and _TOO_LONG.search(exc.message):
            gen = _failed("prompt_too_long", message, ours, retryable=False)
        elif code == 400 and "does not support thinking" in exc.message:
            gen = _failed("rejected", message, ours, retryable=False)
            gen.fatal = (
                f"{self.model} on {host} cannot think: set think = false for teacher "
                f"{self.name!r} in models.toml"
            )
        else:
            gen = _failed("rejected", message, ours, retryable=False)
        gen.status = code
        return gen

    def advice(self, gen: Generation) -> str:
        kind = gen.error_kind
        if _OUT_OF_MEMORY.search(gen.error_message or ""):
            return (
                f"the model ran out of memory at num_ctx={self.num_ctx}: set a smaller num_ctx "
                f"and max_num_ctx for teacher {self.name!r} in models.toml, or use a smaller model"
            )
        if kind == "unreachable":
            return "start the server (`ollama serve`, or open the Ollama app)"
        if kind == "no_reply":
            return (
                f"the server accepts requests but never answers: check it (its log, `ollama ps`), "
                f"or raise `first_token_timeout` for teacher {self.name!r} if loading the model "
                "takes longer"
            )
        if kind == "timeout":
            return (
                f"the server sent nothing for {self.spec.timeout:g} s each time: it may be "
                f"overloaded or the model too large for it; raise `timeout` for teacher "
                f"{self.name!r} or use a smaller model"
            )
        if kind == "rejected":
            return f"check the settings of teacher {self.name!r} in models.toml"
        return (
            "read the server's log (the `ollama serve` output, ~/.ollama/logs/server.log, or "
            "`journalctl -u ollama`)"
        )


async def inspect_model(spec: TeacherSpec) -> tuple[ModelInfo, str, list[str]]:
    """(what the server says about the model, the resolved host, warnings); TeacherError with
    what to do when the server does not answer or does not have the model."""
    try:
        host = spec.resolved_host
    except OllamaHostError as exc:
        raise TeacherError(f"teacher {spec.name!r}: {exc}") from None
    model = spec.model or ""
    probe = await probe_server(host, [model], timeout=max(spec.connect_timeout, 3.0))
    if probe.error is not None:
        raise TeacherError(probe.error)
    info = probe.models[model]
    if not info.pulled:
        raise TeacherError(not_pulled_message(host, model))
    return info, host, probe.warnings


def _truncated(ours: int, counted: int | None, num_ctx: int) -> bool:
    """Whether the server cut the prompt, judged from its own count when it gave one.

    Ollama's llama-server runner cuts a prompt of more than num_ctx - 1 tokens to exactly
    `context_shift_cut` tokens (its count includes cached tokens); older runners cut it to
    num_ctx. A prompt our estimate puts well above that count, counted at one of those exact
    lengths, was cut. Without a count, only our estimate is left.
    """
    if counted is None:
        return ours > num_ctx
    if counted >= num_ctx - 1:
        return True
    cuts = {context_shift_cut(num_ctx, keep) for keep in NUM_KEEP}
    return any(abs(counted - cut) <= 1 for cut in cuts) and ours > counted * 1.2


async def _error_body(reply: httpx.Response) -> str:
    """The message of an error reply, reading at most ERROR_BODY_BYTES of its body."""
    data = b""
    async for chunk in reply.aiter_bytes():
        data += chunk
        if len(data) >= ERROR_BODY_BYTES:
            break
    return _error_text(data[:ERROR_BODY_BYTES], reply)


def _error_text(data: bytes, reply: httpx.Response) -> str:
    try:
        body = json.loads(data)
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("error"):
        return str(body["error"])
    text = data.decode("utf-8", "replace").strip()
    return text[:300] or reply.reason_phrase or f"HTTP {reply.status_code}"


def _keep(gen: Generation, got: _Received) -> Generation:
    """`gen` with the text and thinking that arrived before the failure."""
    if got.content:
        gen.text = got.text
    gen.thinking = got.thought
    return gen


def _failed(kind: str, message: str, ours: int, retryable: bool = True) -> Generation:
    return Generation(
        error_kind=kind, error_message=message, retryable=retryable, prompt_tokens=ours
    )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _ms(ns: Any) -> float | None:
    value = _int(ns)
    return None if value is None else value / 1e6


def tagged(model: str) -> str:
    """Ollama's rule: a model named without a tag is its `:latest` (a registry's port is no tag)."""
    return model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"


async def open_backend(
    spec: TeacherSpec, concurrency: int | None, log: Callable[[str], None] | None = None
) -> OllamaTeacher:
    """The registry's entry point."""
    return await OllamaTeacher.open(spec, concurrency=concurrency, log=log)


async def check_server(spec: TeacherSpec, timeout: float) -> ServerCheck:
    """Is the server up, the model pulled, and can it think if asked to? One short probe."""
    try:
        host = spec.resolved_host
    except OllamaHostError as exc:
        return ServerCheck(False, "error", str(exc))
    model = spec.model or ""
    probe = await probe_server(host, [model], timeout=timeout)
    if probe.error is not None:
        return ServerCheck(False, "unreachable", probe.error)
    version = f"version {probe.version}" if probe.version else "version unknown"
    server = "; ".join(
        [f"Ollama at {host}: {version}, {len(probe.names)} models pulled", *probe.warnings]
    )
    info = probe.models[model]
    if not info.pulled:
        return ServerCheck(False, "not pulled", not_pulled_message(host, model), server=server)
    facts = ServerCheck(
        True,
        "pulled",
        "",
        context_length=info.context_length,
        capabilities=info.capabilities,
        digest=info.digest,
        size_bytes=info.size,
        server=server,
    )
    if spec.think is not False and info.can("thinking") is False:
        why = f"{model} cannot think and teacher {spec.name!r} asks for think = {spec.think!r}"
        return replace(facts, ready=False, state="error", detail=f"{why}: set think = false")
    known = [f"context {info.context_length:,}" if info.context_length else "context unknown"]
    caps = [c for c in info.capabilities or () if c != "completion"]
    if caps:
        known.append(", ".join(caps))
    if info.digest:
        known.append(f"digest {info.digest.removeprefix('sha256:')[:12]}")
    where = f"{spec.name}: {model} is pulled on the Ollama server at {host}"
    return replace(facts, detail=f"{where} ({'; '.join(known)})")
