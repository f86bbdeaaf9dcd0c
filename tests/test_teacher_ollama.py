"""The Ollama teacher against an Ollama-protocol server on loopback (tests/ollama_server.py)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ollama_server import GARBAGE, Cut, Error, OllamaTestServer, Reply, Slow, StreamError

from srt_local.config import TeacherOptions, TeacherSpec, load_models
from srt_local.pairs import Pair
from srt_local.teachers import TeacherError, open_teacher
from srt_local.teachers.chat import RETRY_TEMPERATURE, RetryPolicy
from srt_local.teachers.ollama import DEFAULT_PARALLEL, OllamaTeacher, default_concurrency

PAIR = Pair("Give three tips for staying healthy.", "", "Eat well.")
FAST_RETRY = RetryPolicy(transport_retries=4, base_delay=0.01, max_delay=0.05)


@pytest.fixture
def server() -> Iterator[OllamaTestServer]:
    with OllamaTestServer() as srv:
        yield srv


def spec_for(srv: OllamaTestServer | str, **kw: Any) -> TeacherSpec:
    host = srv if isinstance(srv, str) else srv.url
    model = kw.pop("model", "llama3.1:8b")
    options = kw.pop("options", TeacherOptions(num_ctx=4096, num_predict=512))
    return TeacherSpec(
        name="test-ollama",
        backend="ollama",
        model=model,
        host=host,
        options=options,
        keep_alive="5m",
        timeout=kw.pop("timeout", 5.0),
        **kw,
    )


async def opened(srv: OllamaTestServer, stream: bool = True, **kw: Any) -> OllamaTeacher:
    concurrency = kw.pop("concurrency", None)
    return await OllamaTeacher.open(
        spec_for(srv, **kw), concurrency=concurrency, stream=stream, retry=FAST_RETRY
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- the happy path


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("output", ["markers", "json"])
@pytest.mark.parametrize("stage", ["instruction", "response"])
async def test_reflect_both_stages_both_modes(
    server: OllamaTestServer, stream: bool, output: str, stage: str
) -> None:
    teacher = await opened(server, stream=stream, output=output)
    try:
        result = await teacher.reflect(stage, PAIR)
    finally:
        await teacher.aclose()
    assert result.outcome == "ok"
    assert result.reflection is not None
    if stage == "instruction":
        assert result.reflection.instruction and result.reflection.instruction != PAIR.instruction
    else:
        assert result.reflection.instruction is None
    assert result.reflection.output and result.reflection.critique
    (call,) = result.calls
    sent = server.chat_requests[-1].body
    assert sent["stream"] is stream
    assert sent["messages"] == call.messages
    assert sent["options"] == {"temperature": 0.0, "seed": 0, "num_ctx": 4096, "num_predict": 512}
    assert sent["keep_alive"] == "5m"
    if output == "json":
        assert sent["format"]["required"][0] == "critique"
        assert "maxLength" not in str(sent["format"])  # a large teacher's strings are not capped
    else:
        assert "format" not in sent
    assert call.outcome == "ok" and call.attempt == 1
    assert call.backend == "ollama" and call.model == "llama3.1:8b"
    assert call.host == server.url
    assert call.prompt_version.endswith(output)
    assert call.raw_reply and call.raw_reply.strip()
    assert call.prompt_tokens and call.prompt_eval_count
    assert call.prompt_truncated is False
    assert call.eval_count and call.total_duration_ms and call.eval_duration_ms
    assert call.started_at <= call.finished_at


async def test_open_reads_the_digest_and_details_once(server: OllamaTestServer) -> None:
    teacher = await opened(server)
    await teacher.reflect("response", PAIR)
    await teacher.aclose()
    paths = [r.path for r in server.requests]
    assert paths.count("/api/tags") == 1 and paths.count("/api/show") == 1
    assert teacher.model_digest and len(teacher.model_digest) == 64
    assert teacher.details["family"] == "llama" and teacher.details["context_length"] == 131072
    assert teacher.model_digest[:0] == "" and teacher.key.startswith("ollama/llama3.1:8b/")


async def test_key_follows_what_shapes_the_replies(server: OllamaTestServer) -> None:
    a = await opened(server)
    b = await opened(server, timeout=99.0, concurrency=7)
    c = await opened(server, output="json")
    d = await opened(server, options=TeacherOptions(num_ctx=4096, num_predict=512, seed=1))
    for t in (a, b, c, d):
        await t.aclose()
    assert a.key == b.key
    assert len({a.key, c.key, d.key}) == 3


# ---------------------------------------------------------------- prompt counts


async def test_truncation_is_flagged(server: OllamaTestServer) -> None:
    teacher = await opened(server)
    server.script(Reply(prompt_eval_count=4096))  # the server filled its window
    full = await teacher.reflect("response", PAIR)
    long_pair = Pair("Summarize this.", "", "word " * 6000)  # ~7500 tokens for num_ctx 4096
    too_long = await teacher.reflect("response", long_pair)
    await teacher.aclose()
    assert full.calls[0].prompt_truncated is True
    # An over-long response is cut before sending so the prompt leaves num_predict for the reply
    # (srt_local.teacher_fit), and the cut is recorded.
    cut = too_long.calls[0]
    assert cut.prompt_truncated is True and "cut from" in cut.options["srt_trimmed"]
    assert cut.prompt_tokens is not None and cut.prompt_tokens + 512 <= 4096


async def test_a_small_count_from_a_cached_prefix_is_not_truncation(
    server: OllamaTestServer,
) -> None:
    teacher = await opened(server)
    server.script(Reply(prompt_eval_count=20))  # the short prompt was mostly in the cache
    result = await teacher.reflect("response", PAIR)
    await teacher.aclose()
    assert result.calls[0].prompt_eval_count == 20
    assert result.calls[0].prompt_truncated is False


# ---------------------------------------------------------------- parse retries


async def test_unparsable_reply_is_asked_again_with_a_new_seed(server: OllamaTestServer) -> None:
    teacher = await opened(server)
    server.script(Reply(GARBAGE))
    result = await teacher.reflect("instruction", PAIR)
    await teacher.aclose()
    assert result.outcome == "ok" and result.reflection is not None
    assert [c.outcome for c in result.calls] == ["parse_failed", "ok"]
    assert result.calls[0].raw_reply == GARBAGE
    assert result.calls[0].error_message
    seeds = [r.body["options"]["seed"] for r in server.chat_requests]
    temps = [r.body["options"]["temperature"] for r in server.chat_requests]
    assert seeds == [0, 1]
    assert temps == [0.0, RETRY_TEMPERATURE]  # temperature 0 would repeat the same text
    assert [c.options["seed"] for c in result.calls] == [0, 1]


async def test_parse_failures_stop_at_max_attempts_and_keep_every_reply(
    server: OllamaTestServer,
) -> None:
    teacher = await opened(server, max_attempts=3)
    replies = [GARBAGE, "[Better Answer] N/A [End]", "I'm sorry, but I can't help with that."]
    server.script(*(Reply(r) for r in replies), Reply())
    result = await teacher.reflect("response", PAIR)
    await teacher.aclose()
    assert result.reflection is None
    assert result.outcome == "refused"
    assert [c.outcome for c in result.calls] == ["parse_failed", "empty", "refused"]
    assert [c.raw_reply for c in result.calls] == replies
    assert [c.attempt for c in result.calls] == [1, 2, 3]
    assert len(server.chat_requests) == 3


async def test_a_reply_cut_at_num_predict_is_not_taken_whole(server: OllamaTestServer) -> None:
    teacher = await opened(server)
    server.script(
        Reply("Too short.\n[Better Answer]\nEat a varied diet, sleep and", done_reason="length")
    )
    result = await teacher.reflect("response", PAIR)
    await teacher.aclose()
    assert [c.outcome for c in result.calls] == ["parse_failed", "ok"]


# ---------------------------------------------------------------- transport failures


@pytest.mark.parametrize("stream", [True, False])
async def test_transient_failures_are_retried(server: OllamaTestServer, stream: bool) -> None:
    teacher = await opened(server, stream=stream, timeout=0.5)
    server.script(
        Error(503, "server busy, please try again.  maximum pending requests exceeded"),
        Error(500, "llama runner process has terminated"),
        Cut(after=2),
        Slow(3.0),
    )
    started = time.monotonic()
    result = await teacher.reflect("response", PAIR)
    await teacher.aclose()
    assert time.monotonic() - started < 3.0
    assert result.outcome == "ok"
    kinds = [c.error_kind for c in result.calls]
    assert kinds == ["busy", "server_error", "stream_cut", "timeout", None]
    assert all(c.outcome == "error" for c in result.calls[:4])
    assert "maximum pending requests" in (result.calls[0].error_message or "")
    assert [c.attempt for c in result.calls] == [1, 2, 3, 4, 5]
    # Re-sending after a failed request keeps the seed: only an unparsable reply changes it.
    assert {r.body["options"]["seed"] for r in server.chat_requests} == {0}


async def test_an_error_inside_the_stream_is_retried(server: OllamaTestServer) -> None:
    teacher = await opened(server)
    server.script(StreamError("an error was encountered while running the model", after=1))
    result = await teacher.reflect("instruction", PAIR)
    await teacher.aclose()
    assert [c.error_kind for c in result.calls] == ["stream_error", None]
    assert result.outcome == "ok"


async def test_the_retry_budget_is_bounded(server: OllamaTestServer) -> None:
    teacher = await OllamaTeacher.open(
        spec_for(server), retry=RetryPolicy(transport_retries=2, base_delay=0.01)
    )
    server.script(*[Error(500, "boom")] * 5)
    result = await teacher.reflect("response", PAIR)
    await teacher.aclose()
    assert result.outcome == "error" and result.reflection is None
    assert len(result.calls) == 3
    assert all(c.error_kind == "server_error" for c in result.calls)


def test_back_off_grows_with_jitter_and_a_cap() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=5.0)
    for retry, top in ((1, 1.0), (2, 2.0), (3, 4.0), (6, 5.0)):
        delays = [policy.delay(retry) for _ in range(50)]
        assert all(top / 2 <= d <= top for d in delays)
        assert len(set(delays)) > 1


# ---------------------------------------------------------------- unrecoverable errors


async def test_model_not_pulled_names_ollama_pull(server: OllamaTestServer) -> None:
    with pytest.raises(TeacherError, match=r"`ollama pull qwen2.5:72b`"):
        await OllamaTeacher.open(spec_for(server, model="qwen2.5:72b"))


async def test_model_removed_mid_run_stops_with_the_calls(server: OllamaTestServer) -> None:
    teacher = await opened(server)
    server.script(Error(404, 'model "llama3.1:8b" not found, try pulling it first'))
    with pytest.raises(TeacherError, match=r"ollama pull llama3\.1:8b") as info:
        await teacher.reflect("response", PAIR)
    await teacher.aclose()
    assert [c.error_kind for c in info.value.calls] == ["model_not_found"]
    assert len(server.chat_requests) == 1  # not retried


async def test_a_rejected_request_is_not_retried(server: OllamaTestServer) -> None:
    teacher = await opened(server)
    server.script(Error(400, "invalid options: num_ctx"))
    with pytest.raises(TeacherError, match="rejected the request: invalid options"):
        await teacher.reflect("response", PAIR)
    await teacher.aclose()
    assert len(server.chat_requests) == 1


async def test_unreachable_server_names_the_host_and_ollama_serve() -> None:
    host = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(
        TeacherError,
        match=r"no Ollama server answers at http://127\.0\.0\.1:\d+"
        r".*`ollama serve`",
    ):
        await OllamaTeacher.open(spec_for(host))


@pytest.mark.parametrize("stream", [True, False])
async def test_server_gone_mid_run_stops_after_the_retries(stream: bool) -> None:
    srv = OllamaTestServer().start()
    teacher = await opened(srv, stream=stream)
    srv.stop()
    with pytest.raises(TeacherError, match="ollama serve") as info:
        await teacher.reflect("response", PAIR)
    await teacher.aclose()
    assert len(info.value.calls) == FAST_RETRY.transport_retries + 1
    assert {c.error_kind for c in info.value.calls} == {"unreachable"}


# ---------------------------------------------------------------- concurrency


async def test_concurrency_is_bounded_and_used(monkeypatch: pytest.MonkeyPatch) -> None:
    with OllamaTestServer(latency=0.3) as srv:
        teacher = await opened(srv, concurrency=3)
        started = time.monotonic()
        results = await asyncio.gather(*(teacher.reflect("response", PAIR) for _ in range(9)))
        elapsed = time.monotonic() - started
        await teacher.aclose()
    assert all(r.outcome == "ok" for r in results)
    assert srv.peak_in_flight == 3
    assert 0.85 <= elapsed < 1.3  # three waves of 0.3 s


def test_default_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLAMA_NUM_PARALLEL", raising=False)
    assert default_concurrency() == DEFAULT_PARALLEL == 4
    monkeypatch.setenv("OLLAMA_NUM_PARALLEL", "2")
    assert default_concurrency() == 2
    monkeypatch.setenv("OLLAMA_NUM_PARALLEL", "lots")
    assert default_concurrency() == 4


async def test_spec_concurrency_zero_means_the_servers(
    server: OllamaTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_NUM_PARALLEL", "3")
    teacher = await OllamaTeacher.open(spec_for(server, concurrency=0))
    explicit = await OllamaTeacher.open(spec_for(server, concurrency=2))
    override = await OllamaTeacher.open(spec_for(server, concurrency=2), concurrency=6)
    for t in (teacher, explicit, override):
        await t.aclose()
    assert (teacher.concurrency, explicit.concurrency, override.concurrency) == (3, 2, 6)


async def test_queue_full_503_from_a_busy_server_is_retried() -> None:
    with OllamaTestServer(latency=0.2, parallel=1, max_queue=0) as srv:
        # The back-off (0.05 s, then doubling) outlasts the 0.2 s the other request holds the slot.
        teacher = await OllamaTeacher.open(
            spec_for(srv), concurrency=2, retry=RetryPolicy(base_delay=0.1)
        )
        results = await asyncio.gather(*(teacher.reflect("response", PAIR) for _ in range(2)))
        await teacher.aclose()
    assert all(r.outcome == "ok" for r in results)
    kinds = [c.error_kind for r in results for c in r.calls if c.error_kind]
    assert kinds and set(kinds) == {"busy"}


# ---------------------------------------------------------------- auto


def models_file(tmp_path: Path, host: str, model: str = "llama3.1:8b") -> Path:
    path = tmp_path / "models.toml"
    path.write_text(
        f'[teachers.ollama]\nbackend = "ollama"\nmodel = "{model}"\nhost = "{host}"\n'
        "timeout = 5\noptions = { num_ctx = 4096, num_predict = 256 }\n"
    )
    return path


async def test_auto_picks_ollama_when_it_serves(server: OllamaTestServer, tmp_path: Path) -> None:
    lines: list[str] = []
    config = load_models(models_file(tmp_path, server.url))
    teacher = await open_teacher("auto", config, log=lines.append)
    try:
        assert isinstance(teacher, OllamaTeacher)
        assert (await teacher.reflect("response", PAIR)).outcome == "ok"
    finally:
        await teacher.aclose()
    assert len(lines) == 1 and "ollama" in lines[0] and server.url in lines[0]


@pytest.mark.parametrize("why", ["closed port", "not pulled"])
async def test_auto_falls_back_to_the_embedded_teacher(
    server: OllamaTestServer, tmp_path: Path, why: str
) -> None:
    from srt_local.teachers.llamacpp import LlamaCppTeacher

    if why == "closed port":
        file, expected = models_file(tmp_path, f"http://127.0.0.1:{closed_port()}"), "ollama serve"
    else:
        file, expected = models_file(tmp_path, server.url, "mistral:7b"), "ollama pull mistral:7b"
    lines: list[str] = []
    teacher = await open_teacher("auto", load_models(file), log=lines.append)
    await teacher.aclose()
    assert isinstance(teacher, LlamaCppTeacher)
    assert len(lines) == 1
    assert "smollm2-135m-chat (embedded)" in lines[0] and expected in lines[0]


async def test_a_named_teacher_is_opened_without_probing(
    server: OllamaTestServer, tmp_path: Path
) -> None:
    config = load_models(models_file(tmp_path, f"http://127.0.0.1:{closed_port()}"))
    with pytest.raises(TeacherError, match="ollama serve"):
        await open_teacher("ollama", config)
