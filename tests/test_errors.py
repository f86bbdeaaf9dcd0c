"""One error root: every error meant for the user is an SrtError, and `srt` reports it in one
place, as one literal line on stderr with no traceback."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from srt_local.cli import cli
from srt_local.commands.common import UserError
from srt_local.config import ConfigError
from srt_local.errors import SrtError
from srt_local.exporter import ExportError
from srt_local.formats import DatasetFileError
from srt_local.formats.records import RecordProblems
from srt_local.importer import DatasetExistsError, ImportProblem
from srt_local.model_files import ModelFileError
from srt_local.pipeline import PipelineError
from srt_local.readonly_sql import SqlError, SqlRefused
from srt_local.store import StoreBusyError, StoreError
from srt_local.teachers.base import TeacherError


@pytest.mark.parametrize(
    "error",
    [
        ConfigError,
        DatasetExistsError,
        DatasetFileError,
        ExportError,
        ImportProblem,
        ModelFileError,
        PipelineError,
        RecordProblems,
        SqlError,
        SqlRefused,
        StoreBusyError,
        StoreError,
        TeacherError,
        UserError,
    ],
)
def test_every_user_error_derives_from_the_root(error: type[Exception]) -> None:
    assert issubclass(error, SrtError)


def test_an_error_is_one_literal_line(tmp_path: Path) -> None:
    models = tmp_path / "models.toml"
    models.write_text('[students.x]\npath = "x.gguf"\ncolour = ":x: [bold]"\n')
    result = CliRunner().invoke(cli, ["models", "--models-file", str(models)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "[students.x]" in lines[0] and "'colour'" in lines[0]
    assert "Traceback" not in result.output


def test_an_error_from_the_engine_reaches_the_user_unchanged(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    result = CliRunner().invoke(cli, ["status", "--db", str(db)])
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == f"error: {db}: no store here yet (run `srt import` or `srt demo` first)"
    )


def _gguf(*fields: bytes) -> bytes:
    return b"GGUF" + b"".join(fields)


@pytest.mark.parametrize(
    "content",
    [
        _gguf(b"\x03\x00\x00\x00garbage"),  # the header's counts cut short
        _gguf(struct.pack("<IQQ", 3, 0, 1), struct.pack("<Q", 10**12)),  # a 1 TB key
        _gguf(struct.pack("<IQQ", 3, 0, 1), struct.pack("<Q", 1), b"k", b"\x08\x00"),
        # an array of a billion integers in a file of a few bytes
        _gguf(
            struct.pack("<IQQ", 3, 0, 1),
            struct.pack("<Q", 1),
            b"k",
            struct.pack("<IIQ", 9, 4, 10**9),
        ),
    ],
)
def test_a_corrupt_gguf_header_is_one_line_naming_the_file(tmp_path: Path, content: bytes) -> None:
    from srt_local.model_files import read_gguf_info

    path = tmp_path / "student.gguf"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=r"student\.gguf: not a valid GGUF"):
        read_gguf_info(path)
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"instruction": "a", "input": "", "output": "b"}\n')
    db = tmp_path / "srt.duckdb"
    runner = CliRunner()
    assert runner.invoke(cli, ["import", str(data), "--db", str(db)]).exit_code == 0
    result = runner.invoke(cli, ["run", "pairs", "--student", str(path), "--db", str(db)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "student.gguf: not a valid GGUF" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["nosuchcommand"],
        ["run", "demo", "--limit", "0"],
        ["judge", "abc"],
        ["export", "1", "--out", "x.json"],  # click lists the missing option's choices
    ],
)
def test_a_usage_error_is_one_line_too(args: list[str]) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "srt_local.cli", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--help" in lines[0], lines
