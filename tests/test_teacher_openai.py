"""The OpenAI-compatible teacher against a real third-party server: llama-cpp-python's own
(`python -m llama_cpp.server`, the `dev` extra installs its dependencies) serving the embedded
SmolLM2 GGUF on loopback, with an API key."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from srt_local.config import HostSpec, TeacherOptions, TeacherSpec
from srt_local.pairs import Pair
from srt_local.prompts import JSON_KEYS
from srt_local.teachers import TeacherError
from srt_local.teachers.auto import open_pool
from srt_local.teachers.openai_compat import OpenAICompatTeacher

KEY_ENV = "SRT_TEST_OPENAI_KEY"
KEY = "test-key-123"
ALIAS = "smollm2"
PAIR = Pair("Name a primary colour.", "", "Blue.")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(smollm_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The server's API root, once it lists its model."""
    port = _free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(smollm_gguf),
                "--model_alias",
                ALIAS,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "2048",
                "--n_threads",
                "2",
                "--api_key",
                KEY,
                "--interrupt_requests",
                "false",
                "--verbose",
                "false",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
            try:
                r = httpx.get(f"{base}/models", headers={"Authorization": f"Bearer {KEY}"})
                if r.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server not ready in 120 s: {log.read_text()[-2000:]}")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


def spec_for(base: str | None, **kw: Any) -> TeacherSpec:
    return TeacherSpec(
        name=kw.pop("name", "served"),
        backend="openai",
        model=kw.pop("model", ALIAS),
        base_url=base,
        api_key_env=KEY_ENV,
        options=kw.pop("options", TeacherOptions(num_ctx=2048, num_predict=24)),
        timeout=120.0,
        max_attempts=1,
        **kw,
    )


@pytest.mark.slow
async def test_a_real_reflection_in_json_mode_with_its_provenance(server: str, key: str) -> None:
    teacher = await OpenAICompatTeacher.open(
        spec_for(server, output="json", response_format="json_object", stream=False),
        concurrency=1,
    )
    try:
        result = await teacher.reflect("response", PAIR)
    finally:
        await teacher.aclose()
    (call,) = result.calls
    assert call.error_kind is None, call.error_message
    assert (call.backend, call.model, call.host) == ("openai", ALIAS, server)
    assert call.model_digest is None and teacher.key.startswith(f"openai/{ALIAS}/")
    assert call.output_mode == "json" and call.options["num_predict"] == 24
    # Constrained by the schema: the reply opens the object with its first key (24 tokens may
    # cut it before the end).
    assert (call.raw_reply or "").replace(" ", "").startswith('{"' + JSON_KEYS["response"][0])
    assert call.prompt_eval_count and call.prompt_tokens and call.eval_count
    assert call.eval_count <= 24 and call.total_duration_ms
    assert call.started_at <= call.finished_at


@pytest.mark.slow
async def test_a_pool_streams_from_the_same_server_under_two_names(server: str, key: str) -> None:
    other = server.replace("127.0.0.1", "localhost")
    spec = spec_for(
        None, output="markers", hosts=(HostSpec(server, 1), HostSpec(other, 1)), stream=True
    )
    pool = await open_pool(spec, None)
    try:
        results = [await pool.reflect("response", PAIR) for _ in range(2)]
    finally:
        await pool.aclose()
    calls = [c for r in results for c in r.calls]
    assert all(c.error_kind is None for c in calls), [c.error_message for c in calls]
    assert {c.host for c in calls} <= {server, other}
    assert all(c.raw_reply for c in calls)
    # llama-cpp-python sends no usage in a stream (include_usage is ignored): counts stay NULL
    # rather than guessed.
    assert all(c.eval_count is None or c.eval_count > 0 for c in calls)


async def test_json_schema_refused_says_what_to_set(server: str, key: str) -> None:
    # llama-cpp-python's server takes only {"type": "json_object"}: the refusal is fatal (the
    # same for every request) and says which setting to change.
    teacher = await OpenAICompatTeacher.open(spec_for(server, output="json"), concurrency=1)
    try:
        with pytest.raises(TeacherError, match='response_format = "json_object"') as info:
            await teacher.reflect("instruction", PAIR)
    finally:
        await teacher.aclose()
    (call,) = info.value.calls
    # It answers HTTP 500 with pydantic's validation message; that is still the request's fault,
    # so not retried and (in a pool) not blamed on the host.
    assert call.error_kind == "rejected" and "response_format" in (call.error_message or "")


async def test_wrong_or_missing_key(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(TeacherError, match=f"\\${KEY_ENV}, which is not set"):
        await OpenAICompatTeacher.open(spec_for(server))
    monkeypatch.setenv(KEY_ENV, "wrong")
    with pytest.raises(TeacherError, match="refused the API key"):
        await OpenAICompatTeacher.open(spec_for(server))


async def test_a_model_the_server_does_not_list(server: str, key: str) -> None:
    with pytest.raises(TeacherError, match=f"has no model 'gpt-9'.*lists: {ALIAS}"):
        await OpenAICompatTeacher.open(spec_for(server, model="gpt-9"))


async def test_no_server_says_how_to_start_one(key: str) -> None:
    base = f"http://127.0.0.1:{_free_port()}/v1"
    with pytest.raises(TeacherError, match=r"no server answers at .*llama_cpp\.server"):
        await OpenAICompatTeacher.open(spec_for(base))
