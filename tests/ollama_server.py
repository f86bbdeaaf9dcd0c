"""An Ollama-protocol HTTP server on loopback, for tests and benchmarks (no Ollama binary can be
installed here).

It follows Ollama's API documentation (docs/api.md): POST /api/chat streams NDJSON messages ending
with a `done: true` message that carries the counts and durations (ns), or answers one JSON object
when `"stream": false`; GET /api/tags lists the models with their digests; POST /api/show gives the
details and model_info; GET /api/version; errors are `{"error": "..."}` with Ollama's status codes
(404 model not found, 400 bad request, 503 queue full). Streams use chunked transfer encoding, as
Ollama's do, so a stream cut mid-way is a connection closed before the last chunk.

    with OllamaTestServer(latency=0.2) as server:
        spec = TeacherSpec(name="t", backend="ollama", model=server.model, host=server.url)
        server.script(Error(503, "busy"), Cut(after=2))   # the next two chat requests
        ...
        server.chat_requests[0].body["options"]["seed"]

Unscripted chat requests get a well-formed reflection built from the request, for both stages
and both output modes (markers, or JSON when `format` is a schema).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_MODEL = "llama3.1:8b"
VERSION = "0.12.6"
GARBAGE = "Sure! Here you go: lorem ipsum dolor sit amet, consectetur adipiscing elit. Thanks!"


# ---------------------------------------------------------------- scripted behaviours


@dataclass(frozen=True)
class Reply:
    """Answer normally; `text` None means the default reflection for the request."""

    text: str | None = None
    delay: float = 0.0
    done_reason: str = "stop"
    prompt_eval_count: int | None = None  # None: our estimate of the prompt, capped at num_ctx


@dataclass(frozen=True)
class Error:
    """An HTTP error with Ollama's body, {"error": message}."""

    status: int
    message: str = "internal error"


@dataclass(frozen=True)
class Slow:
    """Wait `seconds` before answering (to outlast a client's timeout)."""

    seconds: float


@dataclass(frozen=True)
class Cut:
    """Close the connection mid-reply: after `after` parts of a stream, or half of a JSON body."""

    after: int = 2


@dataclass(frozen=True)
class StreamError:
    """Stream `after` parts, then an in-stream {"error": ...} line, as Ollama does when the model
    fails mid-generation."""

    message: str = "an error was encountered while running the model"
    after: int = 1


Action = Reply | Error | Slow | Cut | StreamError


@dataclass
class RecordedRequest:
    method: str
    path: str
    body: Any
    at: float


# ---------------------------------------------------------------- default replies


def default_reply(body: dict[str, Any]) -> str:
    """A well-formed reflection of the pair in a chat request, in the request's output mode."""
    messages = body.get("messages") or []
    user = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    instruction = _section(user, "Instruction") or "the task"
    answer = _section(user, "Answer") or ""
    fmt = body.get("format")
    schema_keys = set((fmt or {}).get("properties", {})) if isinstance(fmt, dict) else set()
    seed = (body.get("options") or {}).get("seed", 0)
    topic = " ".join(instruction.split()[:12]).rstrip(".?!:")
    critique = (
        f"The instruction ({len(instruction)} characters) is vague and asks for little detail; "
        f"the answer ({len(answer)} characters) is short and gives no reasoning."
    )
    new_instruction = (
        f"Explain in depth, step by step and with two worked examples: {topic}. "
        f"Compare at least two approaches and state when each one fails. (variant {seed})"
    )
    new_answer = (
        f"First approach: start from the definitions behind '{topic}' and build up. "
        "Second approach: work backwards from the goal. Example 1 shows the first approach; "
        "Example 2 shows where the second one fails and why. In short, prefer the first."
    )
    better = (
        f"A complete answer to '{topic}': it states the key facts, explains each of them, "
        "gives an example, and ends with a short summary of the main points."
    )
    instruction_stage = "new_instruction" in schema_keys or "[New Instruction]" in user
    if schema_keys:
        if instruction_stage:
            obj = {
                "critique": critique,
                "new_instruction": new_instruction,
                "new_answer": new_answer,
            }
        else:
            obj = {"critique": critique, "better_answer": better}
        return json.dumps(obj)
    if instruction_stage:
        return (
            f"{critique}\n\n[New Instruction]\n{new_instruction}\n[End]\n\n"
            f"[New Answer]\n{new_answer}\n[End]"
        )
    return f"{critique}\n\n[Better Answer]\n{better}\n[End]"


def _section(text: str, name: str) -> str:
    match = re.search(rf"### {name}\n(.*?)(?:\n\n### |\Z)", text, re.DOTALL)
    return match.group(1).strip() if match else ""


def _estimate_prompt(messages: list[dict[str, Any]]) -> int:
    return sum(len(str(m.get("content", ""))) // 4 + 4 for m in messages)


def _digest(model: str) -> str:
    return hashlib.sha256(model.encode()).hexdigest()


# ---------------------------------------------------------------- the server


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def drop_connections(self) -> None:
        """Close kept-alive connections too, so a stopped server is gone for its clients."""
        with self.connections_lock:
            for conn in self.open_connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self.open_connections.clear()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (its timeout) closes the socket while we write: that is the test.
        pass


class OllamaTestServer:
    """A threaded Ollama-protocol server on 127.0.0.1 with an ephemeral port."""

    def __init__(
        self,
        models: tuple[str, ...] = (DEFAULT_MODEL,),
        latency: float = 0.0,
        parallel: int | None = None,
        max_queue: int | None = None,
        parts: int = 4,
    ) -> None:
        self.models = models
        self.latency = latency
        self.parts = parts
        self.max_queue = max_queue
        self.requests: list[RecordedRequest] = []
        self.peak_in_flight = 0
        self._in_flight = 0
        self._waiting = 0
        self._slots = threading.Semaphore(parallel) if parallel else None
        self._actions: deque[Action] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def model(self) -> str:
        return self.models[0]

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == "/api/chat"]

    def script(self, *actions: Action) -> None:
        """Queue behaviours for the next chat requests, one each, in order."""
        with self._lock:
            self._actions.extend(actions)

    def start(self) -> OllamaTestServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.drop_connections()
        self._thread.join(timeout=5)

    def __enter__(self) -> OllamaTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- used by the handler

    def _record(self, method: str, path: str, body: Any) -> None:
        with self._lock:
            self.requests.append(RecordedRequest(method, path, body, time.monotonic()))

    def _next_action(self) -> Action | None:
        with self._lock:
            return self._actions.popleft() if self._actions else None

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stop.wait(seconds)

    def _enter(self) -> bool:
        """Take a processing slot, waiting in the queue; False when the queue is full (503)."""
        if self._slots is not None and not self._slots.acquire(blocking=False):
            with self._lock:
                if self.max_queue is not None and self._waiting >= self.max_queue:
                    return False
                self._waiting += 1
            self._slots.acquire()
            with self._lock:
                self._waiting -= 1
        with self._lock:
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        return True

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1
        if self._slots is not None:
            self._slots.release()


def _handler_for(server: OllamaTestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Go's net/http (Ollama) sets TCP_NODELAY; without it every streamed chunk waits ~40 ms
        # for a delayed ACK.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            with server._httpd.connections_lock:
                server._httpd.open_connections.add(self.connection)

        def finish(self) -> None:
            with server._httpd.connections_lock:
                server._httpd.open_connections.discard(self.connection)
            super().finish()

        # -- plumbing

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                return json.loads(raw) if raw else {}
            except ValueError:
                return None

        def _send_json(self, status: int, obj: Any) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            self._send_json(status, {"error": message})

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _drop(self) -> None:
            self.close_connection = True
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)

        # -- routes

        def do_GET(self) -> None:
            server._record("GET", self.path, None)
            if self.path == "/api/tags":
                self._send_json(200, {"models": [self._model_entry(m) for m in server.models]})
            elif self.path == "/api/version":
                self._send_json(200, {"version": VERSION})
            elif self.path == "/api/ps":
                self._send_json(200, {"models": []})
            elif self.path == "/":
                self._send_text(200, "Ollama is running")
            else:
                self._send_text(404, "404 page not found")

        def do_HEAD(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            body = self._body()
            server._record("POST", self.path, body)
            if body is None:
                self._error(400, "invalid character in request body")
            elif self.path == "/api/show":
                self._show(body)
            elif self.path == "/api/chat":
                self._chat(body)
            else:
                self._send_text(404, "404 page not found")

        def _send_text(self, status: int, text: str) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _model_entry(self, model: str) -> dict[str, Any]:
            return {
                "name": model,
                "model": model,
                "modified_at": "2025-06-01T12:00:00.000000Z",
                "size": 4920753328,
                "digest": _digest(model),
                "details": self._details(),
            }

        def _details(self) -> dict[str, Any]:
            return {
                "parent_model": "",
                "format": "gguf",
                "family": "llama",
                "families": ["llama"],
                "parameter_size": "8.0B",
                "quantization_level": "Q4_K_M",
            }

        def _show(self, body: dict[str, Any]) -> None:
            model = body.get("model") or body.get("name") or ""
            if model not in server.models and f"{model}:latest" not in server.models:
                self._error(404, f"model '{model}' not found")
                return
            self._send_json(
                200,
                {
                    "modelfile": f"FROM {model}\n",
                    "parameters": 'stop "<|eot_id|>"',
                    "template": "{{ .Prompt }}",
                    "details": self._details(),
                    "model_info": {"general.architecture": "llama", "llama.context_length": 131072},
                    "capabilities": ["completion", "tools"],
                    "modified_at": "2025-06-01T12:00:00.000000Z",
                },
            )

        def _chat(self, body: dict[str, Any]) -> None:
            model = body.get("model")
            if not model:
                self._error(400, "model is required")
                return
            if model not in server.models and f"{model}:latest" not in server.models:
                self._error(404, f'model "{model}" not found, try pulling it first')
                return
            if not server._enter():
                self._error(
                    503, "server busy, please try again.  maximum pending requests exceeded"
                )
                return
            try:
                self._chat_in_slot(body, model)
            finally:
                server._leave()

        def _chat_in_slot(self, body: dict[str, Any], model: str) -> None:
            action = server._next_action()
            server._sleep(server.latency)
            if isinstance(action, Error):
                self._error(action.status, action.message)
                return
            if isinstance(action, Slow):
                server._sleep(action.seconds)
            reply = action if isinstance(action, Reply) else Reply()
            server._sleep(reply.delay)
            text = reply.text if reply.text is not None else default_reply(body)
            options = body.get("options") or {}
            num_ctx = int(options.get("num_ctx", 2048))
            counted = reply.prompt_eval_count
            if counted is None:
                counted = min(_estimate_prompt(body.get("messages") or []), num_ctx)
            final = {
                "model": model,
                "created_at": _now(),
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": reply.done_reason,
                "total_duration": int(server.latency * 1e9) + 1_000_000,
                "load_duration": 500_000,
                "prompt_eval_count": counted,
                "prompt_eval_duration": 200_000,
                "eval_count": max(1, len(text) // 4),
                "eval_duration": 300_000,
            }
            if body.get("stream", True):
                self._stream(model, text, final, action)
            else:
                self._whole(text, final, action)

        def _stream(
            self, model: str, text: str, final: dict[str, Any], action: Action | None
        ) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            step = max(1, -(-len(text) // server.parts))
            pieces = [text[i : i + step] for i in range(0, len(text), step)] or [""]
            for n, piece in enumerate(pieces):
                if isinstance(action, Cut) and n == action.after:
                    self._drop()
                    return
                if isinstance(action, StreamError) and n == action.after:
                    self._chunk(json.dumps({"error": action.message}).encode() + b"\n")
                    self._chunk(b"")
                    return
                part = {
                    "model": model,
                    "created_at": _now(),
                    "message": {"role": "assistant", "content": piece},
                    "done": False,
                }
                self._chunk(json.dumps(part).encode() + b"\n")
            if isinstance(action, Cut):
                self._drop()
                return
            self._chunk(json.dumps(final).encode() + b"\n")
            self._chunk(b"")

        def _whole(self, text: str, final: dict[str, Any], action: Action | None) -> None:
            obj = {**final, "message": {"role": "assistant", "content": text}}
            data = json.dumps(obj).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if isinstance(action, Cut | StreamError):
                self.wfile.write(data[: len(data) // 2])
                self._drop()
                return
            self.wfile.write(data)

    return Handler


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


__all__ = [
    "DEFAULT_MODEL",
    "GARBAGE",
    "Cut",
    "Error",
    "OllamaTestServer",
    "RecordedRequest",
    "Reply",
    "Slow",
    "StreamError",
    "default_reply",
]
