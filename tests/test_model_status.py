"""Model status (srt_local.model_status): one computation for `srt models`, the Models tab and the
teacher `auto` picks, with Ollama's `:latest` rule."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from srt_local.cli import cli
from srt_local.config import load_models
from srt_local.model_status import (
    MISSING,
    PRESENT,
    UNCHECKED,
    UNREADABLE,
    check_servers,
    model_statuses,
    teacher_status,
)
from srt_local.teachers.ollama import tagged
from tests.ollama_server import OllamaTestServer


def test_the_latest_rule() -> None:
    assert tagged("llama3.1") == "llama3.1:latest"
    assert tagged("llama3.1:8b") == "llama3.1:8b"
    assert tagged("localhost:5000/team/model") == "localhost:5000/team/model:latest"
    assert tagged("localhost:5000/team/model:q4") == "localhost:5000/team/model:q4"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def models_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(body)
    return path


def test_files_are_checked_and_a_truncated_gguf_is_a_row_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "cut.gguf").write_bytes(b"GGUF\x03\x00\x00\x00\x00")
    file = models_file(
        tmp_path,
        '[students.cut]\npath = "cut.gguf"\n[students.gone]\npath = "gone.gguf"\n',
    )
    rows = {r.name: r for r in model_statuses(load_models(file), read_headers=True)}
    assert rows["cut"].state == UNREADABLE and "cannot read the GGUF header" in rows["cut"].detail
    assert rows["gone"].state == MISSING and "GGUF file not found" in rows["gone"].detail
    assert rows["cut"].role == "student" and rows["cut"].label == "llama.cpp"
    result = CliRunner().invoke(cli, ["models", "--models-file", str(file)], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "cannot read the GGUF header" in result.stdout


@pytest.mark.parametrize(
    ("model", "state"),
    [
        ("llama3.1:8b", "pulled"),
        ("mistral", "pulled"),
        ("mistral:latest", "pulled"),
        ("llama3.1", "not pulled"),
        ("phi3", "not pulled"),
    ],
)
async def test_servers_are_asked_once_with_the_latest_rule(
    tmp_path: Path, model: str, state: str
) -> None:
    with OllamaTestServer(models=("llama3.1:8b", "mistral:latest")) as server:
        file = models_file(
            tmp_path,
            f'[teachers.ollama]\nbackend = "ollama"\nmodel = "{model}"\nhost = "{server.url}"\n'
            f'[teachers.other]\nbackend = "ollama"\nmodel = "x"\nhost = "http://127.0.0.1:{closed_port()}"\n',
        )
        rows = model_statuses(load_models(file))
        served = {r.name: r for r in rows if r.served}
        assert {r.state for r in served.values()} == {UNCHECKED}
        checked = {r.name: r for r in await check_servers(rows, timeout=2.0)}
        one = await teacher_status(load_models(file).teacher("ollama"), timeout=2.0)
    assert checked["ollama"].state == one.state == state
    assert checked["ollama"].usable == (state == "pulled")
    assert checked["other"].state == "unreachable" and "ollama serve" in checked["other"].detail
    # files are not asked again: the GGUF rows are as they were
    assert [r for r in checked.values() if not r.served] == [r for r in rows if not r.served]
    assert all(r.state in (PRESENT, MISSING) for r in rows if not r.served)
