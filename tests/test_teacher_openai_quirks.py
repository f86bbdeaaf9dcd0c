"""OpenAI-compatible servers that bend the protocol: one that ignores "stream": true, one that
rejects a single request with HTTP 400. A small stand-in server, written here, plays them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from srt_local.config import TeacherOptions, TeacherSpec
from srt_local.pairs import Pair
from srt_local.teachers.openai_compat import OpenAICompatTeacher

MODEL = "stand-in"
REPLY = "[New Instruction] Name three primary colours. [End]\n[New Answer] Red, yellow, blue. [End]"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _json(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._json(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = json.dumps(body["messages"])
        if "REJECT-ME" in text:
            self._json(400, {"error": {"message": "this prompt is over the context length"}})
            return
        # Whatever "stream" says: the whole reply at once, as some servers do.
        self._json(
            200,
            {
                "choices": [
                    {"message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 20},
            },
        )


@pytest.fixture
def base_url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def _spec(base_url: str) -> TeacherSpec:
    return TeacherSpec(
        name="quirky",
        backend="openai",
        model=MODEL,
        base_url=base_url,
        output="markers",
        options=TeacherOptions(num_ctx=2048, num_predict=64),
        timeout=30.0,
        max_attempts=1,
    )


async def test_a_server_that_ignores_stream_still_gives_its_reply(base_url: str) -> None:
    teacher = await OpenAICompatTeacher.open(_spec(base_url), concurrency=1)
    try:
        result = await teacher.reflect("instruction", Pair("Name a colour.", "", "Red."))
    finally:
        await teacher.aclose()
    assert result.outcome == "ok", [c.error_message for c in result.calls]
    assert result.calls[0].eval_count == 20


async def test_a_rejected_request_fails_its_sample_not_the_teacher(base_url: str) -> None:
    teacher = await OpenAICompatTeacher.open(_spec(base_url), concurrency=1)
    try:
        bad = await teacher.reflect("instruction", Pair("REJECT-ME please", "", "No."))
        good = await teacher.reflect("instruction", Pair("Name a colour.", "", "Red."))
    finally:
        await teacher.aclose()
    assert bad.outcome == "rejected"
    assert "over the context length" in (bad.calls[0].error_message or "")
    assert len(bad.calls) == 1  # the same request would be rejected again: not retried
    assert good.outcome == "ok"
