"""The pipeline's commands as a user runs them: demo, status, sql, and the errors they give."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ollama_server import OllamaTestServer


def srt(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "srt_local.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory, gemma_gguf: Path) -> Path:
    db = tmp_path_factory.mktemp("cli") / "srt.duckdb"
    with OllamaTestServer(latency=0.05) as server:
        done = srt("demo", "--limit", "3", "--db", str(db), env={"OLLAMA_HOST": server.url})
    assert done.returncode == 0, done.stderr
    # auto found the Ollama server and said so; the demo tells the user where to go next
    assert "teacher: ollama" in done.stderr
    assert str(db) in done.stderr and "srt sql" in done.stderr
    return db


def test_demo_decides_every_sample(demo_db: Path) -> None:
    out = srt(
        "sql", "SELECT count(*) AS n FROM decisions", "--format", "json", "--db", str(demo_db)
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip()) == {"n": 3}


def test_demo_queries_it_suggests_all_run(demo_db: Path) -> None:
    from srt_local.commands.demo import QUERIES

    for _title, query in QUERIES:
        out = srt("sql", query, "--format", "csv", "--db", str(demo_db))
        assert out.returncode == 0, (query, out.stderr)


def test_status_shows_stages(demo_db: Path) -> None:
    out = srt("status", "--db", str(demo_db))
    assert out.returncode == 0, out.stderr
    # a result: on stdout
    assert "instruction reflection" in out.stdout and "decision" in out.stdout
    assert "done" in out.stdout


def test_sql_is_read_only_and_errors_are_messages(demo_db: Path) -> None:
    out = srt("sql", "DELETE FROM decisions", "--db", str(demo_db))
    assert out.returncode == 2
    assert "read-only" in out.stderr.lower() and "Traceback" not in out.stderr
    out = srt("sql", "SELECT nope FROM decisions", "--db", str(demo_db))
    assert out.returncode == 2 and "SQL error" in out.stderr


def test_run_on_unknown_dataset_names_the_known_ones(demo_db: Path) -> None:
    out = srt("run", "nosuch", "--db", str(demo_db))
    assert out.returncode == 2
    assert "nosuch" in out.stderr and "demo" in out.stderr and "Traceback" not in out.stderr


def test_dead_ollama_teacher_is_a_message_not_a_traceback(demo_db: Path, tmp_path: Path) -> None:
    out = srt(
        "run",
        "demo",
        "--teacher",
        "ollama",
        "--limit",
        "4",
        "--db",
        str(demo_db),
        env={"OLLAMA_HOST": "http://127.0.0.1:9"},
    )
    assert out.returncode == 4, out.stderr  # the run failed (documented exit code)
    assert "127.0.0.1:9" in out.stderr and "Traceback" not in out.stderr
    # the failed run is recorded with its error, and nothing already stored is lost
    status = srt(
        "sql",
        "SELECT status, error FROM runs ORDER BY run_id DESC LIMIT 1",
        "--format",
        "json",
        "--db",
        str(demo_db),
    )
    row = json.loads(status.stdout.strip())
    assert row["status"] == "failed" and "127.0.0.1:9" in row["error"]
    n = srt("sql", "SELECT count(*) AS n FROM decisions", "--format", "json", "--db", str(demo_db))
    assert json.loads(n.stdout.strip()) == {"n": 3}
