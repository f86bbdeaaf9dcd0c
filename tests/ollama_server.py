"""An Ollama server on loopback for tests and benchmarks (no Ollama binary can be installed here).

Written from Ollama's source (github.com/ollama/ollama, read in 2026; no code copied), so that srt
meets here what it meets against the real server:
- server/routes.go ChatHandler: `think` absent turns thinking on for a model that can think; think
  true (or a level) for one that cannot is HTTP 400 `"<model>" does not support thinking`; thinking
  streams in `message.thinking` before the content; a chat with no messages only loads the model
  (done_reason "load"); the final line carries done_reason ("stop", "length"), total_duration,
  load_duration, prompt_eval_count, prompt_eval_duration, eval_count, eval_duration (ns); errors are
  `{"error": "..."}`: 404 `model '<name>' not found`, 400 for a bad request.
- server/prompt.go chatPrompt: messages that do not fit num_ctx are dropped from the front, always
  keeping the system messages and the last message.
- llm/llama_server.go completionPromptForRequest: a prompt of more than num_ctx - 1 tokens is cut
  to num_keep (4, +1 for BOS) tokens from its start and its tail, `num_ctx - (num_ctx - keep) // 2`
  tokens in all, silently; for a model without context shift (the deepseek2 family, server/sched.go
  supportsContextShift) it is HTTP 400 instead. prompt_eval_count counts every prompt token read
  (cached and new: cache_n + prompt_n), so a cut prompt reports about half of num_ctx.
- llm/server.go, server/sched.go: num_ctx is clamped to the model's trained context
  (`<arch>.context_length` in /api/show model_info); each model serves OLLAMA_NUM_PARALLEL requests
  at once (default 1) and queues the rest, answering 503 `server busy, please try again.  maximum
  pending requests exceeded` past OLLAMA_MAX_QUEUE (512).
- envconfig: names are compared case-insensitively, `x` meaning `x:latest` and `library/x`.
Tokens here come from a small deterministic tokenizer (word pieces of up to 4 characters), not a
model's, so the server's counts differ from srt's own estimate as a real tokenizer's do.

    with OllamaTestServer(latency=0.2) as server:
        spec = TeacherSpec(name="t", backend="ollama", model=server.model, host=server.url)
        server.script(Error(503, "busy"), Cut(after=2))   # the next two chat requests
        server.down(Error(500, "llama runner process has terminated"))  # until server.up()
        server.chat_requests[0].body["options"]["seed"]

Unscripted chat requests get a well-formed reflection of what the model saw (the prompt after any
cut), for both stages and both output modes (markers, or JSON when `format` is a schema).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import select
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

DEFAULT_MODEL = "llama3.1:8b"
VERSION = "0.12.6"
GARBAGE = "Sure! Here you go: lorem ipsum dolor sit amet, consectetur adipiscing elit. Thanks!"
QUEUE_FULL = "server busy, please try again.  maximum pending requests exceeded"
NO_CONTEXT_SHIFT = (
    "the prompt is longer than the context length currently available to the model; shorten the "
    "prompt, adjust the context length in settings, or use a model with a longer context length"
)
NUM_KEEP = 4  # api.DefaultOptions
THINK_LEVELS = ("low", "medium", "high", "max")


# ---------------------------------------------------------------- models


@dataclass(frozen=True)
class Model:
    """A pulled model: what /api/tags and /api/show say of it and how it behaves."""

    name: str
    family: str = "llama"
    context_length: int = 131072
    capabilities: tuple[str, ...] = ("completion", "tools")
    context_shift: bool = True
    always_thinks: bool = False  # gpt-oss: think sets a level; false does not stop it
    parameter_size: str = "8.0B"

    @property
    def thinks(self) -> bool:
        return "thinking" in self.capabilities


KNOWN = {
    m.name: m
    for m in (
        Model("llama3.1:8b"),
        Model(
            "qwen3:8b", "qwen3", 40960, ("completion", "tools", "thinking"), parameter_size="8.2B"
        ),
        Model(
            "gpt-oss:20b",
            "gptoss",
            131072,
            ("completion", "tools", "thinking"),
            always_thinks=True,
            parameter_size="20.9B",
        ),
        Model("deepseek-v2:16b", "deepseek2", 163840, ("completion",), context_shift=False),
    )
}


def normalize(name: str) -> str:
    """A model name in Ollama's full form, lower case (names compare case-insensitively)."""
    text = name.strip().lower()
    slash, colon = text.rfind("/"), text.rfind(":")
    path, tag = (text[:colon], text[colon + 1 :]) if colon > slash else (text, "latest")
    parts = path.split("/")
    parts = ["registry.ollama.ai", "library", *parts] if len(parts) == 1 else parts
    parts = ["registry.ollama.ai", *parts] if len(parts) == 2 else parts
    return "/".join(parts) + ":" + tag


@dataclass(frozen=True)
class Compat:
    """Switch off parts of Ollama's API, as Ollama-compatible servers do."""

    show: bool = True  # POST /api/show exists
    tags_model_field: bool = True  # /api/tags entries carry `model` (else only `name`)
    final_message: bool = True  # the final line of a stream carries `message`


# ---------------------------------------------------------------- scripted behaviours


@dataclass(frozen=True)
class Reply:
    """Answer normally; `text` None means the default reflection for the request. `thinking` None
    means the default thinking when the model thinks. `done_reason` and `prompt_eval_count` None
    mean what the server computes."""

    text: str | None = None
    delay: float = 0.0
    done_reason: str | None = None
    prompt_eval_count: int | None = None
    thinking: str | None = None


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


@dataclass(frozen=True)
class Echo:
    """Answer with the last `chars` characters of the prompt the model saw (a model that only
    repeats its prompt)."""

    chars: int = 600


@dataclass(frozen=True)
class Flood:
    """Stream `chars` characters of content in parts of `part_chars` (one part: a single huge
    line), whatever num_predict says, then the final line: a server or model that runs away."""

    chars: int = 5_000_000
    part_chars: int = 65536


Action = Reply | Error | Slow | Cut | StreamError | Echo | Flood


@dataclass
class RecordedRequest:
    method: str
    path: str
    body: Any
    at: float


@dataclass
class _Queue:
    slots: threading.Semaphore
    waiting: int = 0
    running: int = 0


# ---------------------------------------------------------------- tokens and default replies

_TOKEN = re.compile(r"\s?\w{1,4}|\s?[^\w\s]|\s+")


def tokenize(text: str) -> list[str]:
    """The server's tokens of `text`: pieces of up to 4 word characters, single punctuation."""
    return _TOKEN.findall(text)


def render(messages: list[dict[str, Any]]) -> list[str]:
    """The chat template's tokens: BOS, then each message between role and end tokens, then the
    assistant's turn."""
    tokens = ["<bos>"]
    for m in messages:
        tokens += [f"<|{m.get('role', 'user')}|>", "\n"]
        tokens += tokenize(str(m.get("content", "")))
        tokens += ["<|end|>", "\n"]
    return [*tokens, "<|assistant|>", "\n"]


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


def default_thinking(level: Any) -> str:
    base = (
        "Okay, the user wants me to review one training example. First I read the instruction "
        "and the answer. The instruction is short and the answer lacks detail. I should explain "
        "the weaknesses, then write the rewrite between the markers they asked for. "
    )
    return base * (3 if level == "high" else 1)


def _section(text: str, name: str) -> str:
    match = re.search(rf"### {name}\n(.*?)(?:\n\n### |\Z)", text, re.DOTALL)
    return match.group(1).strip() if match else ""


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
    """A threaded Ollama server on 127.0.0.1 (`port` 0: an ephemeral one).

    `parallel` is OLLAMA_NUM_PARALLEL (requests per model at once; None: no limit), `max_queue`
    OLLAMA_MAX_QUEUE; `parts` splits each reply into that many streamed parts instead of one part
    per token; `default_num_ctx` is the context of a request that sets none.
    """

    def __init__(
        self,
        models: tuple[str | Model, ...] = (DEFAULT_MODEL,),
        latency: float = 0.0,
        parallel: int | None = 1,
        max_queue: int | None = 512,
        parts: int | None = None,
        port: int = 0,
        compat: Compat | None = None,
        default_num_ctx: int = 4096,
        echo_tail: int | None = None,
    ) -> None:
        self.catalog = [m if isinstance(m, Model) else KNOWN.get(m, Model(m)) for m in models]
        self.latency = latency
        self.parts = parts
        self.parallel = parallel
        self.max_queue = max_queue
        self.compat = compat or Compat()
        self.default_num_ctx = default_num_ctx
        self.echo_tail = echo_tail
        self.requests: list[RecordedRequest] = []
        self.peak_in_flight = 0
        self._in_flight = 0
        self._queues: dict[str, _Queue] = {}
        self._actions: deque[Action] = deque()
        self._lasting: Error | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd = _QuietServer(("127.0.0.1", port), _handler_for(self))
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.catalog)

    @property
    def model(self) -> str:
        return self.catalog[0].name

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

    def down(self, error: Error) -> None:
        """Answer every chat request with `error` until `up()` (a runner that keeps failing)."""
        with self._lock:
            self._lasting = error

    def up(self) -> None:
        with self._lock:
            self._lasting = None

    def find(self, name: str) -> Model | None:
        key = normalize(name)
        return next((m for m in self.catalog if normalize(m.name) == key), None)

    def start(self) -> OllamaTestServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.drop_connections()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- used by the handler

    def _record(self, method: str, path: str, body: Any) -> None:
        with self._lock:
            self.requests.append(RecordedRequest(method, path, body, time.monotonic()))

    def _next_action(self) -> Action | None:
        with self._lock:
            if self._lasting is not None:
                return self._lasting
            return self._actions.popleft() if self._actions else None

    def _enter(self, model: str) -> bool:
        """Take one of the model's slots, waiting in its queue; False when the queue is full."""
        with self._lock:
            queue = self._queues.setdefault(
                model, _Queue(threading.Semaphore(self.parallel or 1_000_000))
            )
            free = queue.slots.acquire(blocking=False)
            if not free:
                pending = sum(q.waiting for q in self._queues.values())
                if self.max_queue is not None and pending >= self.max_queue:
                    return False
                queue.waiting += 1
        if not free:
            queue.slots.acquire()
            with self._lock:
                queue.waiting -= 1
        with self._lock:
            queue.running += 1
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        return True

    def _leave(self, model: str) -> None:
        with self._lock:
            queue = self._queues[model]
            queue.running -= 1
            self._in_flight -= 1
        queue.slots.release()


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

        def _send_text(self, status: int, text: str) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            self._send_json(status, {"error": message})

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _wait(self, seconds: float) -> bool:
            """Sleep `seconds`; False as soon as the client hangs up (Ollama cancels a request
            whose client went away, which frees its slot)."""
            deadline = time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0 and not server._stop.is_set():
                ready, _, _ = select.select([self.connection], [], [], min(left, 0.02))
                if ready:
                    try:
                        if not self.connection.recv(1, socket.MSG_PEEK):
                            return False
                    except OSError:
                        return False
            if server._stop.is_set():
                self._drop()  # a server stopped mid-request cuts it, as a killed Ollama does
                return False
            return True

        def _drop(self) -> None:
            self.close_connection = True
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)

        # -- routes

        def do_GET(self) -> None:
            server._record("GET", self.path, None)
            if self.path == "/api/tags":
                self._send_json(200, {"models": [self._model_entry(m) for m in server.catalog]})
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
            if self.path == "/api/show" and not server.compat.show:
                self._send_text(404, "404 page not found")
            elif body is None or not isinstance(body, dict):
                self._error(400, "invalid character in request body")
            elif self.path == "/api/show":
                self._show(body)
            elif self.path == "/api/chat":
                self._chat(body)
            else:
                self._send_text(404, "404 page not found")

        def _model_entry(self, m: Model) -> dict[str, Any]:
            entry = {
                "name": m.name,
                "model": m.name,
                "modified_at": "2025-06-01T12:00:00.000000Z",
                "size": 4920753328,
                "digest": _digest(m.name),
                "details": self._details(m),
            }
            if not server.compat.tags_model_field:
                del entry["model"]
            return entry

        def _details(self, m: Model) -> dict[str, Any]:
            return {
                "parent_model": "",
                "format": "gguf",
                "family": m.family,
                "families": [m.family],
                "parameter_size": m.parameter_size,
                "quantization_level": "Q4_K_M",
            }

        def _show(self, body: dict[str, Any]) -> None:
            name = body.get("model") or body.get("name") or ""
            m = server.find(name)
            if m is None:
                self._error(404, f"model '{name}' not found")
                return
            self._send_json(
                200,
                {
                    "modelfile": f"FROM {m.name}\n",
                    "parameters": 'stop "<|end|>"',
                    "template": "{{ .Prompt }}",
                    "details": self._details(m),
                    "model_info": {
                        "general.architecture": m.family,
                        f"{m.family}.context_length": m.context_length,
                    },
                    "capabilities": list(m.capabilities),
                    "modified_at": "2025-06-01T12:00:00.000000Z",
                },
            )

        def _chat(self, body: dict[str, Any]) -> None:
            name = body.get("model")
            if not name:
                self._error(400, "model is required")
                return
            m = server.find(str(name))
            if m is None:
                self._error(404, f"model '{name}' not found")
                return
            think = body.get("think")
            if think is not None and not isinstance(think, bool) and think not in THINK_LEVELS:
                self._error(400, f"invalid think value: {think!r}")
                return
            if think and not m.thinks:
                self._error(400, f'"{name}" does not support thinking')
                return
            if not server._enter(m.name):
                self._error(503, QUEUE_FULL)
                return
            try:
                self._chat_in_slot(body, str(name), m)
            finally:
                server._leave(m.name)

        def _chat_in_slot(self, body: dict[str, Any], name: str, m: Model) -> None:
            action = server._next_action()
            if not self._wait(server.latency):
                return
            if isinstance(action, Error):
                self._error(action.status, action.message)
                return
            messages = body.get("messages") or []
            if not messages:
                self._send_json(200, self._final(name, "load", 0, 0))
                return
            if isinstance(action, Slow) and not self._wait(action.seconds):
                return
            options = body.get("options") or {}
            num_ctx = min(int(options.get("num_ctx") or server.default_num_ctx), m.context_length)
            seen = self._prompt(messages, num_ctx, m)
            if seen is None:
                self._error(400, NO_CONTEXT_SHIFT)
                return
            prompt_tokens, visible = seen
            if isinstance(action, Flood):
                self._flood(name, action, body.get("stream", True), len(prompt_tokens))
                return
            reply = action if isinstance(action, Reply) else Reply()
            if not self._wait(reply.delay):
                return
            echo = action.chars if isinstance(action, Echo) else server.echo_tail
            if reply.text is not None:
                text = reply.text
            elif echo:
                text = visible[-echo:]
            else:
                text = default_reply({**body, "messages": [{"role": "user", "content": visible}]})
            think = body.get("think")
            thinking_on = m.thinks and (think is None or bool(think) or m.always_thinks)
            thought = ""
            if thinking_on:
                thought = reply.thinking if reply.thinking is not None else default_thinking(think)
            thought_tokens, text_tokens = tokenize(thought), tokenize(text)
            budget = int(options.get("num_predict", -1))
            if not m.context_shift:
                room = num_ctx - len(prompt_tokens)
                budget = room if budget < 0 else min(budget, room)
            done_reason = "stop"
            if 0 <= budget < len(thought_tokens) + len(text_tokens):
                done_reason = "length"
                thought_tokens = thought_tokens[:budget]
                text_tokens = text_tokens[: max(0, budget - len(thought_tokens))]
            final = self._final(
                name,
                reply.done_reason or done_reason,
                reply.prompt_eval_count
                if reply.prompt_eval_count is not None
                else len(prompt_tokens),
                len(thought_tokens) + len(text_tokens),
            )
            if body.get("stream", True):
                self._stream(name, thought_tokens, text_tokens, final, action)
            else:
                self._whole("".join(thought_tokens), "".join(text_tokens), final, action)

        def _prompt(
            self, messages: list[dict[str, Any]], num_ctx: int, m: Model
        ) -> tuple[list[str], str] | None:
            """(the tokens the model reads, its text); None if too long for a model without
            context shift."""
            m_index = 0
            for i in range(len(messages)):
                system = [x for x in messages[:i] if x.get("role") == "system"]
                if len(render(system + messages[i:])) <= num_ctx or i == len(messages) - 1:
                    m_index = i
                    break
            system = [x for x in messages[:m_index] if x.get("role") == "system"]
            tokens = render(system + messages[m_index:])
            if len(tokens) <= num_ctx - 1:
                return tokens, "".join(t for t in tokens if not t.startswith("<"))
            if not m.context_shift:
                return None
            keep = min(NUM_KEEP + 1, num_ctx - 1)  # +1: the tokenizer adds BOS
            limit = num_ctx - max((num_ctx - keep) // 2, 1)
            cut = tokens[:keep] + tokens[len(tokens) - (limit - keep) :]
            return cut, "".join(t for t in cut if not t.startswith("<"))

        def _final(self, name: str, reason: str, prompt: int, generated: int) -> dict[str, Any]:
            final: dict[str, Any] = {
                "model": name,
                "created_at": _now(),
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": reason,
                "total_duration": int(server.latency * 1e9) + 1_000_000,
                "load_duration": 500_000,
                "prompt_eval_count": prompt,
                "prompt_eval_duration": 200_000,
                "eval_count": generated,
                "eval_duration": 300_000,
            }
            if reason == "load":
                for key in (
                    "prompt_eval_count",
                    "prompt_eval_duration",
                    "eval_count",
                    "eval_duration",
                ):
                    del final[key]
            if not server.compat.final_message:
                del final["message"]
            return final

        def _pieces(self, tokens: list[str]) -> list[str]:
            if server.parts is None or not tokens:
                return tokens
            text = "".join(tokens)
            step = max(1, -(-len(text) // server.parts))
            return [text[i : i + step] for i in range(0, len(text), step)]

        def _stream(
            self,
            name: str,
            thought: list[str],
            text: list[str],
            final: dict[str, Any],
            action: Action | None,
        ) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            parts = [("thinking", p) for p in self._pieces(thought)]
            parts += [("content", p) for p in self._pieces(text)] or [("content", "")]
            for n, (kind, piece) in enumerate(parts):
                if isinstance(action, Cut) and n == action.after:
                    self._drop()
                    return
                if isinstance(action, StreamError) and n == action.after:
                    self._chunk(json.dumps({"error": action.message}).encode() + b"\n")
                    self._chunk(b"")
                    return
                message = {"role": "assistant", "content": piece if kind == "content" else ""}
                if kind == "thinking":
                    message["thinking"] = piece
                part = {"model": name, "created_at": _now(), "message": message, "done": False}
                self._chunk(json.dumps(part).encode() + b"\n")
            if isinstance(action, Cut):
                self._drop()
                return
            self._chunk(json.dumps(final).encode() + b"\n")
            self._chunk(b"")

        def _flood(self, name: str, flood: Flood, stream: bool, prompt: int) -> None:
            final = self._final(name, "stop", prompt, flood.chars // 4)
            if not stream:
                self._whole("", "x" * flood.chars, final, None)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, flood.chars, flood.part_chars):
                piece = "x" * min(flood.part_chars, flood.chars - start)
                message = {"role": "assistant", "content": piece}
                part = {"model": name, "created_at": _now(), "message": message, "done": False}
                self._chunk(json.dumps(part).encode() + b"\n")
            self._chunk(json.dumps(final).encode() + b"\n")
            self._chunk(b"")

        def _whole(
            self, thought: str, text: str, final: dict[str, Any], action: Action | None
        ) -> None:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if thought:
                message["thinking"] = thought
            obj = {**final, "message": message}  # a whole reply has its text, whatever the server
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
    "KNOWN",
    "NO_CONTEXT_SHIFT",
    "Compat",
    "Cut",
    "Echo",
    "Error",
    "Flood",
    "Model",
    "OllamaTestServer",
    "RecordedRequest",
    "Reply",
    "Slow",
    "StreamError",
    "default_reply",
    "render",
    "tokenize",
]
