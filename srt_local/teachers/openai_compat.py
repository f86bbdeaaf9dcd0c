"""A teacher served by any OpenAI-compatible server: vLLM, SGLang, llama.cpp's llama-server,
llama-cpp-python's server, a hosted API.

One POST to `{base_url}/chat/completions` per request, over httpx, streamed (server-sent events)
or not. JSON mode asks for schema-constrained output with `response_format`: OpenAI's
`json_schema` form by default, or `json_object` with a `schema` for servers that only know that
(llama-cpp-python's). The API key comes from the environment variable named by `api_key_env`, so
it never sits in models.toml or in the store. The server names no digest for its model, so a
call's provenance is the server, the model name and the options (digest NULL).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from srt_local.config import TeacherSpec
from srt_local.prompts import Prompt, estimate_tokens
from srt_local.teachers.base import TeacherError
from srt_local.teachers.chat import ChatTeacher, Generation, RetryPolicy
from srt_local.teachers.registry import ServerCheck

# Servers built for throughput batch what they are sent; 4 keeps one busy without flooding it.
DEFAULT_CONCURRENCY = 4
CONNECT_TIMEOUT = 10.0
# Options that are not OpenAI's own but that vLLM, SGLang and both llama.cpp servers accept; sent
# only when models.toml sets them.
_EXTRA_OPTIONS = ("top_k", "repeat_penalty")


def unreachable_message(url: str) -> str:
    return (
        f"no server answers at {url}: start it (for example `python -m llama_cpp.server --model "
        "FILE.gguf` or `vllm serve MODEL`), or fix `base_url` in models.toml"
    )


def api_key(spec: TeacherSpec) -> str | None:
    """The key from the variable `api_key_env` names; TeacherError when that variable is unset."""
    if spec.api_key_env is None:
        return None
    value = os.environ.get(spec.api_key_env)
    if not value:
        raise TeacherError(
            f"teacher {spec.name!r} reads its API key from ${spec.api_key_env}, which is not set: "
            f"export {spec.api_key_env}=... before running"
        )
    return value


class _StreamCut(Exception):
    """The event stream ended before a finish_reason or [DONE]."""


class _ServerError(Exception):
    """An error object sent inside the event stream."""


class OpenAICompatTeacher(ChatTeacher):
    """Reflections from a chat model behind an OpenAI-compatible /chat/completions endpoint."""

    backend = "openai"

    def __init__(
        self,
        spec: TeacherSpec,
        client: httpx.AsyncClient,
        base_url: str,
        concurrency: int,
        retry: RetryPolicy | None = None,
    ) -> None:
        assert spec.model is not None
        super().__init__(spec, spec.model, None, base_url, concurrency, retry)
        self.base_url = base_url
        self.stream = spec.stream
        self._client = client
        self._slots = asyncio.Semaphore(self.concurrency)

    @classmethod
    async def open(
        cls,
        spec: TeacherSpec,
        concurrency: int | None = None,
        retry: RetryPolicy | None = None,
        base_url: str | None = None,
    ) -> OpenAICompatTeacher:
        """Connect to `base_url` (default: the spec's) and check the server serves the model."""
        url = base_url or spec.base_url
        if url is None:
            raise TeacherError(f"teacher {spec.name!r} has no base_url")
        key = api_key(spec)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        client = httpx.AsyncClient(
            base_url=url,
            headers=headers,
            timeout=httpx.Timeout(spec.timeout, connect=CONNECT_TIMEOUT),
        )
        try:
            await inspect_server(client, spec, url)
        except BaseException:
            await client.aclose()
            raise
        n = concurrency or spec.concurrency or DEFAULT_CONCURRENCY
        return cls(spec, client, url, n, retry)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _send(self, prompt: Prompt, options: dict[str, Any]) -> Generation:
        async with self._slots:
            started = datetime.now(UTC)
            gen = await self._request(prompt, options)
        gen.started_at = started
        return gen

    def body(self, prompt: Prompt, options: dict[str, Any]) -> dict[str, Any]:
        """The request body: OpenAI's names for our options (num_ctx is the server's business)."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": prompt.messages,
            "temperature": options["temperature"],
            "seed": options["seed"],
            "max_tokens": options["num_predict"],
            "stream": self.stream,
        }
        if "top_p" in options:
            body["top_p"] = options["top_p"]
        for key in _EXTRA_OPTIONS:
            if key in options:
                body[key] = options[key]
        if self.stream:
            body["stream_options"] = {"include_usage": True}
        if prompt.schema is not None:
            if self.spec.response_format == "json_object":
                body["response_format"] = {"type": "json_object", "schema": prompt.schema}
            else:
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {
                        "name": f"{prompt.stage}_reflection",
                        "schema": prompt.schema,
                        "strict": True,
                    },
                }
        return body

    async def _request(self, prompt: Prompt, options: dict[str, Any]) -> Generation:
        ours = estimate_tokens(prompt.messages)
        timeout = self.spec.timeout
        began = time.perf_counter()
        try:
            gen = await asyncio.wait_for(self._chat(self.body(prompt, options)), timeout)
        except (TimeoutError, httpx.TimeoutException):
            return _failed("timeout", f"no complete reply within {timeout:g} s", ours)
        except httpx.ConnectError:
            failed = _failed("unreachable", unreachable_message(self.base_url), ours)
            failed.fatal = failed.error_message
            return failed
        except (_StreamCut, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            return _failed("stream_cut", f"the reply was cut off: {exc}", ours)
        except _ServerError as exc:
            return _failed("stream_error", f"error in the stream: {exc}", ours)
        except (json.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
            return _failed("bad_response", f"the server sent something not OpenAI's: {exc!r}", ours)
        except httpx.HTTPError as exc:
            return _failed("http_error", f"{type(exc).__name__}: {exc}", ours)
        gen.prompt_tokens = ours
        gen.total_duration_ms = (time.perf_counter() - began) * 1000
        return gen

    async def _chat(self, body: dict[str, Any]) -> Generation:
        if not self.stream:
            response = await self._client.post("/chat/completions", json=body)
            if response.status_code != 200:
                return self._status_error(response.status_code, response.text)
            return _whole_reply(response.json())
        parts: list[str] = []
        finish: str | None = None
        usage: dict[str, Any] | None = None
        done = False
        async with self._client.stream("POST", "/chat/completions", json=body) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode("utf-8", "replace")
                return self._status_error(response.status_code, text)
            if "application/json" in response.headers.get("content-type", ""):
                # A server that ignores "stream": true answers with the whole reply at once.
                return _whole_reply(json.loads(await response.aread()))
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, comments (": ping"), event names
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                chunk = json.loads(data)
                if chunk.get("error"):
                    raise _ServerError(_error_text(chunk["error"]))
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or []:
                    parts.append((choice.get("delta") or {}).get("content") or "")
                    finish = choice.get("finish_reason") or finish
        if not done and finish is None:
            raise _StreamCut(f"the stream ended after {len(parts)} events without finishing")
        return _generation("".join(parts), finish, usage)

    def _status_error(self, code: int, text: str) -> Generation:
        message = f"{_error_text(_json_or_text(text))} (HTTP {code})"
        # A server that cannot take our response_format says so in a validation error, some
        # with HTTP 500 (llama-cpp-python's): the request's fault, the same on every retry.
        refused_format = "response_format" in text and "validation" in text.lower()
        if code == 503 and not refused_format:
            return _failed("busy", message, None)
        if (code in (408, 429) or code >= 500) and not refused_format:
            return _failed("server_error", message, None)
        if code in (401, 403):
            gen = _failed("unauthorized", message, None, retryable=False)
            where = f"${self.spec.api_key_env}" if self.spec.api_key_env else "api_key_env"
            gen.fatal = f"the server at {self.base_url} refused the API key ({where}): {message}"
            return gen
        if code == 404:
            gen = _failed("model_not_found", message, None, retryable=False)
            gen.fatal = f"the server at {self.base_url} has no model {self.model!r}: {message}"
            return gen
        # Any other 4xx is this request's own (a prompt over the model's context, say): the
        # sample fails alone, for good, as with Ollama; the same rejection three times in a row
        # pauses the run (chat.py). Only a refused response_format, which every request
        # carries, stops the run at once, saying what to set.
        gen = _failed("rejected", message, None, retryable=False)
        if refused_format or "json_schema" in text:
            gen.fatal = (
                f"the server at {self.base_url} rejected the request: {message}; if it does not "
                f'take OpenAI\'s json_schema, set response_format = "json_object" '
                f'(llama-cpp-python) or output = "markers" in [teachers.{self.name}]'
            )
        return gen


def _whole_reply(reply: dict[str, Any]) -> Generation:
    """A chat completion sent in one piece (not streamed)."""
    choice = reply["choices"][0]
    return _generation(
        choice["message"].get("content") or "", choice.get("finish_reason"), reply.get("usage")
    )


async def inspect_server(client: httpx.AsyncClient, spec: TeacherSpec, url: str) -> list[str]:
    """The model ids the server lists at /models; TeacherError when it does not answer, refuses
    the key, or lists models without ours. A server without /models is taken at its word."""
    try:
        response = await client.get("/models", timeout=CONNECT_TIMEOUT)
    except httpx.ConnectError:
        raise TeacherError(unreachable_message(url)) from None
    except httpx.TimeoutException:
        raise TeacherError(f"the server at {url} did not answer in time") from None
    except httpx.HTTPError as exc:
        raise TeacherError(f"the server at {url} failed: {type(exc).__name__}: {exc}") from None
    if response.status_code in (401, 403):
        raise TeacherError(
            f"the server at {url} refused the API key (api_key_env = "
            f"{spec.api_key_env!r}): HTTP {response.status_code}"
        )
    if response.status_code == 404:
        return []
    if response.status_code != 200:
        raise TeacherError(f"the server at {url} answered /models with HTTP {response.status_code}")
    try:
        ids = [str(m["id"]) for m in response.json()["data"]]
    except (ValueError, KeyError, TypeError):
        raise TeacherError(f"the server at {url} does not answer like an OpenAI API") from None
    if ids and spec.model not in ids:
        raise TeacherError(
            f"the server at {url} has no model {spec.model!r} (it lists: {', '.join(ids)}); "
            f"set `model` in [teachers.{spec.name}] to one of them"
        )
    return ids


def _generation(text: str, finish: str | None, usage: dict[str, Any] | None) -> Generation:
    usage = usage or {}
    counted = usage.get("prompt_tokens")
    return Generation(
        text=text,
        hit_limit=finish == "length",
        prompt_eval_count=counted,
        # These servers refuse a prompt longer than their context instead of cutting it.
        prompt_truncated=False if counted is not None else None,
        eval_count=usage.get("completion_tokens"),
    )


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text.strip()[:300]


def _error_text(error: Any) -> str:
    """The message of an OpenAI error body ({"error": {"message": ...}}), FastAPI's ({"detail":
    ...}) or plain text."""
    if isinstance(error, dict):
        inner = error.get("error", error)
        if isinstance(inner, dict):
            return str(inner.get("message") or inner.get("detail") or inner)[:500]
        return str(error.get("detail") or inner)[:500]
    return str(error)[:500]


def _failed(kind: str, message: str, ours: int | None, retryable: bool = True) -> Generation:
    return Generation(
        error_kind=kind, error_message=message, retryable=retryable, prompt_tokens=ours
    )


async def open_backend(
    spec: TeacherSpec, concurrency: int | None, log: Callable[[str], None] | None = None
) -> OpenAICompatTeacher:
    """The registry's entry point."""
    return await OpenAICompatTeacher.open(spec, concurrency=concurrency)


async def check_server(spec: TeacherSpec, timeout: float) -> ServerCheck:
    """Does the server answer, accept the key and list the model? One short request."""
    url = spec.base_url or ""
    key = api_key(spec)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=httpx.Timeout(timeout)
    ) as client:
        try:
            ids = await inspect_server(client, spec, url)
        except TeacherError as exc:
            state = "unreachable" if "answer" in str(exc) else "error"
            return ServerCheck(False, state, str(exc))
    listed = "listed" if ids else "served (the server lists no models)"
    return ServerCheck(True, "pulled", f"{spec.name}: {spec.model} {listed} at {url}")
