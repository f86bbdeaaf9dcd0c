"""`srt reflect` against the Ollama-protocol test server, and record_call into a real store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from srt_local.cli import cli
from srt_local.store import Store
from srt_local.teacher_log import record_call
from srt_local.teachers import Reflection, TeacherCall
from tests.ollama_server import GARBAGE, Error, OllamaTestServer, Reply

PAIRS = [
    {"instruction": "Give three tips for staying healthy.", "input": "", "output": "Eat well."},
    {
        "instruction": "Summarize the text.",
        "input": "The cat sat on the mat all day.",
        "output": "A cat sat.",
    },
    {"instruction": "Name a prime number.", "input": "", "output": "7"},
]


@pytest.fixture
def server() -> Iterator[OllamaTestServer]:
    with OllamaTestServer() as srv:
        yield srv


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PAIRS), encoding="utf-8")
    return path


def models_file(tmp_path: Path, srv: OllamaTestServer, model: str = "llama3.1:8b") -> Path:
    path = tmp_path / "models.toml"
    path.write_text(
        f'[teachers.srv]\nbackend = "ollama"\nmodel = "{model}"\nhost = "{srv.url}"\n'
        "timeout = 5\nmax_attempts = 2\noptions = { num_ctx = 4096, num_predict = 256 }\n"
    )
    return path


def srt(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def reflect(tmp_path: Path, srv: OllamaTestServer, data: Path, *extra: str | Path) -> Result:
    return srt(
        "reflect",
        data,
        "--teacher",
        "srv",
        "--models-file",
        models_file(tmp_path, srv),
        "--db",
        tmp_path / "srt.duckdb",
        *extra,
    )


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_one_line_per_sample_and_every_call_stored(
    tmp_path: Path, server: OllamaTestServer, dataset: Path
) -> None:
    server.script(Reply(GARBAGE))  # the first sample's first reply does not parse
    out = tmp_path / "out" / "reflected.jsonl"
    result = reflect(
        tmp_path, server, dataset, "--stage", "instruction", "--concurrency", "1", "--out", out
    )
    assert result.exit_code == 0, result.output
    rows = lines(out)
    assert [r["index"] for r in rows] == [0, 1, 2]
    assert [r["location"] for r in rows] == ["line 1", "line 2", "line 3"]
    assert all(r["outcome"] == "ok" for r in rows)
    assert [r["attempts"] for r in rows] == [2, 1, 1]
    for row, pair in zip(rows, PAIRS, strict=True):
        assert row["instruction"] and row["instruction"] != pair["instruction"]
        assert row["input"] == "" and row["output"] and row["critique"]
        assert "[New Instruction]" in str(row["raw_reply"])
    assert "calls/s" in result.stderr and "done: 3/3 samples, 4 calls" in result.stderr
    with Store.open(tmp_path / "srt.duckdb", read_only=True) as store:
        calls = store.query_dicts("SELECT * FROM teacher_calls ORDER BY call_id")
    assert len(calls) == 4
    assert [c["outcome"] for c in calls] == ["parse_failed", "ok", "ok", "ok"]
    assert calls[0]["raw_reply"] == GARBAGE
    assert {c["sample_id"] for c in calls} == {None}
    assert {c["source_kind"] for c in calls} == {"ori"}
    assert len({c["teacher_key"] for c in calls}) == 1
    assert rows[0]["call_ids"] == [calls[0]["call_id"], calls[1]["call_id"]]
    assert json.loads(calls[1]["messages"])[1]["content"].count(PAIRS[0]["instruction"]) == 1
    assert json.loads(calls[1]["parsed"])["instruction"] == rows[0]["instruction"]


def test_response_stage_to_stdout_keeps_instruction_and_input(
    tmp_path: Path, server: OllamaTestServer, dataset: Path
) -> None:
    result = reflect(tmp_path, server, dataset, "--stage", "response", "--limit", "2")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 2
    assert rows[1]["instruction"] == PAIRS[1]["instruction"]
    assert rows[1]["input"] == PAIRS[1]["input"]
    assert rows[1]["output"] != PAIRS[1]["output"]
    assert "reflect:" not in result.stdout  # progress is on stderr only


def test_a_failed_sample_keeps_its_raw_reply(
    tmp_path: Path, server: OllamaTestServer, dataset: Path
) -> None:
    server.script(Reply(GARBAGE), Reply(GARBAGE))  # max_attempts = 2 in the models file
    out = tmp_path / "out.jsonl"
    result = reflect(
        tmp_path, server, dataset, "--stage", "response", "--concurrency", "1", "--out", out
    )
    assert result.exit_code == 0, result.output
    failed = lines(out)[0]
    assert failed["outcome"] == "parse_failed"
    assert failed["instruction"] is None and failed["output"] is None
    assert failed["raw_reply"] == GARBAGE and failed["attempts"] == 2
    assert "[Better Answer]" in str(failed["error"])
    assert "failed: parse_failed 1" in result.stderr


def test_model_not_pulled_stops_before_any_call(
    tmp_path: Path, server: OllamaTestServer, dataset: Path
) -> None:
    path = tmp_path / "m.toml"
    path.write_text(models_file(tmp_path, server, "mistral:7b").read_text())
    out = tmp_path / "out.jsonl"
    result = srt(
        "reflect",
        dataset,
        "--stage",
        "response",
        "--teacher",
        "srv",
        "--models-file",
        path,
        "--db",
        tmp_path / "srt.duckdb",
        "--out",
        out,
    )
    assert result.exit_code == 1
    assert "ollama pull mistral:7b" in result.stderr
    assert not out.exists() and server.chat_requests == []


def test_a_fatal_error_mid_run_keeps_what_was_done(
    tmp_path: Path, server: OllamaTestServer, dataset: Path
) -> None:
    server.script(Reply(), Error(404, 'model "llama3.1:8b" not found, try pulling it first'))
    out = tmp_path / "out.jsonl"
    result = reflect(
        tmp_path, server, dataset, "--stage", "response", "--concurrency", "1", "--out", out
    )
    assert result.exit_code == 1
    assert "ollama pull llama3.1:8b" in result.stderr
    assert "1 of 3 samples were done" in result.stderr
    assert [r["index"] for r in lines(out)] == [0]
    with Store.open(tmp_path / "srt.duckdb", read_only=True) as store:
        kinds = store.query("SELECT outcome, error_kind FROM teacher_calls ORDER BY call_id")
    assert kinds == [("ok", None), ("error", "model_not_found")]


def test_bad_records_are_reported_and_skipped(tmp_path: Path, server: OllamaTestServer) -> None:
    data = tmp_path / "mixed.jsonl"
    data.write_text(
        json.dumps(PAIRS[0]) + "\n" + '{"instruction": 5}\n' + json.dumps(PAIRS[2]) + "\n"
    )
    result = reflect(tmp_path, server, data, "--stage", "response")
    assert result.exit_code == 0, result.output
    assert f"skipped: {data}: line 2" in result.stderr.replace("\n", "")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["location"] for r in rows] == ["line 1", "line 3"]


def test_an_unreadable_file_is_a_usage_error(tmp_path: Path, server: OllamaTestServer) -> None:
    data = tmp_path / "pairs.txt"
    data.write_text("hello")
    result = reflect(tmp_path, server, data, "--stage", "response")
    assert result.exit_code == 2
    assert "unknown file type" in result.output


# ---------------------------------------------------------------- record_call


def test_record_call_round_trip(tmp_path: Path) -> None:
    started = datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)
    call = TeacherCall(
        stage="instruction",
        attempt=2,
        teacher_name="t",
        backend="ollama",
        model="m:1",
        model_digest="abc",
        host="http://127.0.0.1:1",
        options={"seed": 1, "temperature": 0.7},
        prompt_version="instr-v1-markers",
        output_mode="markers",
        messages=[{"role": "user", "content": "héllo"}],
        raw_reply="[New Instruction] x [End]",
        outcome="ok",
        reflection=Reflection("c", "new", "", "answer"),
        prompt_tokens=10,
        prompt_eval_count=9,
        prompt_truncated=False,
        eval_count=5,
        total_duration_ms=12.5,
        load_duration_ms=1.0,
        prompt_eval_duration_ms=2.0,
        eval_duration_ms=3.0,
        error_kind=None,
        error_message=None,
        started_at=started,
        finished_at=started + timedelta(seconds=2),
    )
    failed = TeacherCall(
        **{
            **call.__dict__,
            "outcome": "error",
            "reflection": None,
            "raw_reply": None,
            "error_kind": "timeout",
            "error_message": "slow",
        }
    )
    with Store.open(tmp_path / "s.duckdb") as store:
        with store.transaction() as con:
            first = record_call(con, call, 7, "Q", "key-1")
            second = record_call(con, failed, None, "ori", "key-1")
        row = store.query_dicts("SELECT * FROM teacher_calls WHERE call_id = ?", [first])[0]
        other = store.query_dicts("SELECT * FROM teacher_calls WHERE call_id = ?", [second])[0]
    assert second > first
    assert row["sample_id"] == 7 and row["source_kind"] == "Q" and row["teacher_key"] == "key-1"
    assert json.loads(row["options"]) == {"seed": 1, "temperature": 0.7}
    assert json.loads(row["messages"])[0]["content"] == "héllo"
    assert json.loads(row["parsed"]) == {
        "critique": "c",
        "instruction": "new",
        "input": "",
        "output": "answer",
    }
    assert row["started_at"] == datetime(2026, 1, 2, 3, 4, 5, 600000)  # naive UTC
    assert row["finished_at"] - row["started_at"] == timedelta(seconds=2)
    assert (row["prompt_tokens"], row["prompt_eval_count"], row["eval_count"]) == (10, 9, 5)
    assert row["prompt_truncated"] is False and row["attempt"] == 2
    assert other["parsed"] is None and other["raw_reply"] is None
    assert (other["error_kind"], other["error_message"]) == ("timeout", "slow")
