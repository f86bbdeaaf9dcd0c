"""Size and time limits: a reply past [limits] reply_chars is cut off while it streams and fails
that sample alone; a server that accepts a request and never answers fails it after
first_token_timeout, says so in the log while it waits, and pauses the teacher when it lasts."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from srt_local.config import ConfigError, Limits, TeacherOptions, TeacherSpec, load_models
from srt_local.ollama_probe import ModelInfo
from srt_local.pairs import Pair
from srt_local.teachers import TeacherServerDown, open_teacher
from srt_local.teachers import ollama as ollama_module
from srt_local.teachers.chat import RetryPolicy
from srt_local.teachers.llamacpp import LlamaCppTeacher
from srt_local.teachers.ollama import OllamaTeacher
from tests.ollama_server import Flood, OllamaTestServer, Reply

PAIR = Pair("Give one tip for staying healthy.", "", "Drink water.")
FAST_RETRY = RetryPolicy(transport_retries=4, base_delay=0.01, max_delay=0.05)


def spec_for(host: str, **kw: Any) -> TeacherSpec:
    return TeacherSpec(
        name="t",
        backend="ollama",
        model="llama3.1:8b",
        host=host,
        options=TeacherOptions(num_ctx=4096, num_predict=512),
        timeout=kw.pop("timeout", 5.0),
        **kw,
    )


# ---------------------------------------------------------------- reply size


@pytest.mark.parametrize(
    ("stream", "part_chars"),
    [(True, 65536), (True, 5_000_000), (False, 5_000_000)],
    ids=["stream-parts", "stream-one-line", "whole"],
)
async def test_a_5mb_reply_is_cut_off_and_fails_that_sample_alone(
    stream: bool, part_chars: int
) -> None:
    with OllamaTestServer() as srv:
        teacher = await OllamaTeacher.open(spec_for(srv.url), stream=stream, retry=FAST_RETRY)
        assert teacher.reply_chars == Limits().reply_chars
        srv.script(Flood(5_000_000, part_chars))
        started = time.monotonic()
        result = await teacher.reflect("response", PAIR)
        cut_after = time.monotonic() - started
        after = await teacher.reflect("response", PAIR)  # the teacher goes on
        await teacher.aclose()
    assert result.outcome == "reply_too_long" and result.reflection is None
    (call,) = result.calls  # final: neither re-asked nor re-sent
    assert call.outcome == "reply_too_long" and call.error_kind == "reply_too_long"
    assert "100,000 characters" in (call.error_message or "")
    assert "reply_chars" in (call.error_message or "")
    assert len(call.raw_reply or "") <= teacher.reply_chars
    if part_chars < teacher.reply_chars:
        assert call.raw_reply == "x" * teacher.reply_chars  # what came, capped
    assert after.outcome == "ok"
    assert cut_after < 30  # generous: reading all 5 MB was the stall; this only catches a hang


async def test_open_teacher_holds_the_teacher_to_the_configured_limit(tmp_path: Path) -> None:
    with OllamaTestServer() as srv:
        models = tmp_path / "models.toml"
        models.write_text(
            f'[limits]\nreply_chars = 2000\n\n[teachers.flood]\nbackend = "ollama"\n'
            f'model = "llama3.1:8b"\nhost = "{srv.url}"\n'
        )
        config = load_models(models)
        assert config.limits == Limits(import_field_chars=200_000, reply_chars=2000)
        teacher = await open_teacher("flood", config)
        srv.script(Flood(50_000, 100))
        try:
            result = await teacher.reflect("response", PAIR)
        finally:
            await teacher.aclose()
    assert result.outcome == "reply_too_long"
    assert result.calls[0].raw_reply == "x" * 2000


@pytest.mark.slow
async def test_the_embedded_teacher_stops_at_the_character_limit(smollm_gguf: Path) -> None:
    spec = TeacherSpec(
        name="e",
        backend="llamacpp",
        path=smollm_gguf,
        output="markers",
        options=TeacherOptions(num_predict=200),
    )
    teacher = await LlamaCppTeacher.open(spec, concurrency=1)
    teacher.reply_chars = 40
    try:
        result = await teacher.reflect("response", PAIR)
    finally:
        await teacher.aclose()
    assert result.outcome == "reply_too_long"
    call = result.calls[-1]  # final: the reflection ends with it (earlier replies may not parse)
    assert [c.outcome for c in result.calls].count("reply_too_long") == 1
    assert call.raw_reply is not None and len(call.raw_reply) == 40
    assert (
        call.eval_count is not None and call.eval_count < 200
    )  # stopped early, not at num_predict


# ---------------------------------------------------------------- a server that never answers


class SilentServer:
    """Accepts connections on 127.0.0.1 and never sends a byte (a hung server)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)  # kept open, never read from nor written to

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


async def test_a_server_that_never_answers_fails_after_first_token_timeout_and_pauses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ollama_module, "WAIT_NOTE_SECONDS", 0.1)
    lines: list[str] = []
    with SilentServer() as srv:
        url = srv.url
        spec = spec_for(url, timeout=60.0, first_token_timeout=0.4)
        info = ModelInfo(wanted="llama3.1:8b", name="llama3.1:8b")
        teacher = OllamaTeacher(spec, url, info, 1, retry=FAST_RETRY, log=lines.append)
        started = time.monotonic()
        with pytest.raises(TeacherServerDown) as down:
            await teacher.reflect("response", PAIR)
        waited = time.monotonic() - started
        await teacher.aclose()
        assert len(srv.accepted) == 3  # the connection was made each time: no connect error
    calls = down.value.calls
    assert [c.error_kind for c in calls] == ["no_reply"] * 3  # 3 in a row: the pause
    message = calls[0].error_message or ""
    assert "sent no reply within first_token_timeout = 0.4 s" in message
    assert "first_token_timeout" in str(down.value) and "never answers" in str(down.value)
    # `timeout` (60 s, between pieces) never applied to the first wait.
    assert 1.2 <= waited < 30
    waiting = [line for line in lines if line.startswith("waiting for llama3.1:8b at ")]
    assert waiting == [
        f"waiting for llama3.1:8b at {url}: no reply yet after 0.1 s "
        "(the server may be loading the model)"
    ]  # once while the server stays silent, not once per request


async def test_a_slow_first_piece_within_first_token_timeout_is_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ollama_module, "WAIT_NOTE_SECONDS", 0.1)
    lines: list[str] = []
    with OllamaTestServer() as srv:
        spec = spec_for(srv.url, timeout=0.3, first_token_timeout=5.0)
        teacher = await OllamaTeacher.open(spec, retry=FAST_RETRY, log=lines.append)
        srv.script(Reply(delay=0.8))  # longer than `timeout`, within first_token_timeout
        result = await teacher.reflect("response", PAIR)
        await teacher.aclose()
    assert result.outcome == "ok" and len(result.calls) == 1
    assert sum(line.startswith("waiting for") for line in lines) == 1


# ---------------------------------------------------------------- models.toml


def _models(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(text)
    return path


def test_first_token_timeout_is_read_and_checked(tmp_path: Path) -> None:
    teacher = '[teachers.x]\nbackend = "ollama"\nmodel = "m"\n'
    config = load_models(_models(tmp_path, teacher + "first_token_timeout = 42\n"))
    assert config.teachers["x"].first_token_timeout == 42.0
    assert load_models(_models(tmp_path, teacher)).teachers["x"].first_token_timeout == 300.0
    with pytest.raises(ConfigError, match=r"\[teachers.x\] key 'first_token_timeout'.*above 0"):
        load_models(_models(tmp_path, teacher + "first_token_timeout = 0\n"))


def test_limits_are_read_and_checked(tmp_path: Path) -> None:
    assert load_models().limits == Limits()
    with pytest.raises(ConfigError, match=r"\[limits\] key 'reply_char'.*unknown key"):
        load_models(_models(tmp_path, "[limits]\nreply_char = 5000\n"))
    with pytest.raises(ConfigError, match=r"\[limits\] key 'reply_chars'.*at least 1000"):
        load_models(_models(tmp_path, "[limits]\nreply_chars = 10\n"))


# ---------------------------------------------------------------- a whole run


def test_a_run_meeting_a_5mb_reply_completes_and_never_keeps_it(
    tmp_path: Path, gemma_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from srt_local.exporter import export_run
    from srt_local.importer import import_dataset
    from srt_local.pipeline import RunOptions, prepare_run, run_pipeline
    from srt_local.store import Store

    pairs = [
        {"instruction": "List three primary colours.", "input": "", "output": "Red, blue."},
        {"instruction": "What is 12 times 12?", "input": "", "output": "144."},
    ]
    data = tmp_path / "two.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    store = Store.open(tmp_path / "srt.duckdb")
    import_dataset(store, data, name="two")
    with OllamaTestServer() as server:
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        server.script(Flood(5_000_000))
        config = load_models()
        run_id = prepare_run(store, RunOptions(dataset="two", teacher="ollama"), config)
        summary = run_pipeline(store, run_id, config)
    assert summary.status == "done"
    ((outcome, kind, message, raw),) = store.query(
        "SELECT outcome, error_kind, error_message, length(raw_reply) FROM teacher_calls "
        "WHERE outcome <> 'ok'"
    )
    assert (outcome, kind) == ("reply_too_long", "reply_too_long")
    assert "cut off" in message and raw == 100_000
    assert store.query("SELECT kind, outcome FROM reflection_failures") == [("Q", "reply_too_long")]
    assert store.query("SELECT max(length(output)) FROM versions")[0][0] < 10_000
    out = tmp_path / "out" / "kept.json"
    export_run(store, run_id, "alpaca", out)
    assert "xxxxxxxxxx" not in out.read_text()
    store.close()


# ---------------------------------------------------------------- scoring a huge field


def _filler(chars: int) -> str:
    words = " ".join(
        f"item {i} costs {i * 7 % 100} coins, paid on day {i % 31}." for i in range(chars // 30 + 1)
    )
    return words[:chars]


def _numbers(score: Any) -> tuple[Any, ...]:
    """Everything a score holds but its words (a note counts the tokens of the cut text)."""
    return tuple(v for k, v in score.__dict__.items() if k not in ("detail", "note"))


@pytest.fixture(scope="module")
def small_student(gemma_gguf: Path) -> Iterator[Any]:
    from srt_local.config import StudentSpec
    from srt_local.student import Student

    student = Student.load(StudentSpec(name="gemma", path=gemma_gguf, max_tokens=256))
    yield student
    student.close()


def test_a_cut_huge_field_scores_as_the_whole_field(
    small_student: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from srt_local.student import Student

    tail = _filler(200_000)
    pairs = [
        Pair("Summarise the ledger below.", "", "The ledger says: " + tail),
        Pair("Summarise the ledger: " + tail, "", "It lists items and their costs."),
        Pair("Summarise the ledger.", tail, "It lists items and their costs."),
    ]
    cut = small_student.score_pairs(pairs)
    monkeypatch.setattr(Student, "_bounded", lambda _self, text: text)
    whole = small_student.score_pairs(pairs)
    assert [s.status for s in cut] == ["ok", "truncated_away", "truncated_away"]
    assert [_numbers(s) for s in cut] == [_numbers(s) for s in whole]
    assert cut[0].ifd_ppl is not None and cut[0].n_y_tokens > 0
    assert "of more than" in (cut[0].detail or "")  # the reverse request's note: a cut field


def test_scoring_a_3mb_field_tokenizes_only_a_bounded_prefix(small_student: Any) -> None:
    seen: list[int] = []
    tokenize = small_student.engine.tokenize

    def spy(text: str, special: bool = False) -> list[int]:
        seen.append(len(text))
        return list(tokenize(text, special))

    small_student.engine.tokenize = spy
    try:
        (score,) = small_student.score_pairs(
            [Pair("Summarise the ledger.", "", "The ledger: " + _filler(3_000_000))]
        )
    finally:
        small_student.engine.tokenize = tokenize
    assert score.status == "ok" and score.n_y_tokens > 0
    # max_tokens 256: prefixes of 4,096 and 8,192 characters, plus the prompt, never 3 MB.
    assert max(seen) < 20_000
