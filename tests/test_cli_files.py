"""Files and the machine (issue 9, items 4 and 5): --db must be a store or a new path; export
never overwrites without --force, never its source or dataset_info.json, merges atomically and
refuses an empty selection; every environment failure is one line with the cause and the fix."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner, Result

from srt_local.cli import cli
from srt_local.importer import import_dataset
from srt_local.store import Store

PAIRS = [
    {"instruction": "Name a colour.", "input": "", "output": "Blue."},
    {"instruction": "Translate.", "input": "Où est la gare ?", "output": "Where is it?"},
]


def srt(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def one_line_error(result: Result) -> str:
    """The one error line of a failed command (no traceback)."""
    assert result.exit_code == 2, (result.exit_code, result.stderr, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(PAIRS))
    return path


def _store_with_run(tmp_path: Path, data: Path, emitted: bool) -> Path:
    """A store with `data` imported and run 1 decided on both samples (ori, emitted or not)."""
    db = tmp_path / "s.duckdb"
    with Store.open(db) as store:
        import_dataset(store, data)
        with store.transaction() as con:
            con.execute(
                "INSERT INTO runs (dataset_id, teacher_name, teacher_key, student_name, "
                "student_sha256, template, max_tokens, emit_unreflected, config, status) "
                "SELECT dataset_id, 'embedded', 'tk', 'gemma', 'abc', 'vicuna', 2048, false, "
                "'{}', 'done' FROM datasets"
            )
            con.execute(
                "INSERT INTO versions (sample_id, teacher_key, kind, instruction, input, output, "
                "pair_hash) SELECT sample_id, '', 'ori', instruction, input, output, pair_hash "
                "FROM samples"
            )
            con.execute(
                "INSERT INTO decisions (run_id, sample_id, branch, final_kind, ifd_final, "
                "rifd_final, passes, emitted, reason) SELECT 1, sample_id, 'ori', 'ori', 0.5, 0.5, "
                "?, ?, 'test' FROM samples",
                [emitted, emitted],
            )
    return db


# ---------------------------------------------------------------- --db


def test_db_that_is_not_a_store_is_refused_and_untouched(data: Path) -> None:
    before = data.read_bytes()
    line = one_line_error(srt("import", data, "--db", data))
    assert "not a DuckDB store" in line and "nothing was written" in line
    assert data.read_bytes() == before
    assert sorted(p.name for p in data.parent.iterdir()) == ["r.json"]  # no .wal either
    for command in (["sql", "SELECT 1"], ["status"], ["export", "1", "--format", "alpaca"]):
        args: list[str | Path] = [*command, "--db", data]
        if "export" in command:
            args += ["--out", data.parent / "o.json"]
        assert "not a DuckDB store" in one_line_error(srt(*args))
    assert data.read_bytes() == before


def test_db_that_is_a_folder_is_refused(data: Path, tmp_path: Path) -> None:
    result = srt("import", data, "--db", tmp_path)
    assert result.exit_code == 2 and "Traceback" not in result.stderr


def test_new_db_path_is_created(data: Path, tmp_path: Path) -> None:
    db = tmp_path / "new" / "s.duckdb"
    assert srt("import", data, "--db", db).exit_code == 0
    assert db.exists()


# ---------------------------------------------------------------- export


def test_export_never_overwrites_without_force(data: Path, tmp_path: Path) -> None:
    db = _store_with_run(tmp_path, data, emitted=True)
    out = tmp_path / "kept.json"
    out.write_text("precious")
    assert "--force" in one_line_error(
        srt("export", "1", "--format", "alpaca", "--out", out, "--db", db)
    )
    assert out.read_text() == "precious" and not (tmp_path / "dataset_info.json").exists()
    forced = srt("export", "1", "--format", "alpaca", "--out", out, "--force", "--db", db)
    assert forced.exit_code == 0, forced.stderr
    assert [r["output"] for r in json.loads(out.read_text())] == ["Blue.", "Where is it?"]
    assert "added entry 'kept'" in forced.stderr
    again = srt("export", "1", "--format", "alpaca", "--out", out, "--force", "--db", db)
    assert "replaced entry 'kept'" in again.stderr  # the message says what happened


def test_export_never_overwrites_its_source_or_dataset_info(data: Path, tmp_path: Path) -> None:
    db = _store_with_run(tmp_path, data, emitted=True)
    before = data.read_bytes()
    line = one_line_error(
        srt("export", "1", "--format", "alpaca", "--out", data, "--force", "--db", db)
    )
    assert "source file of dataset 'r'" in line
    assert data.read_bytes() == before
    info = tmp_path / "dataset_info.json"
    info.write_text('{"other": {"file_name": "o.json"}}')
    line = one_line_error(
        srt("export", "1", "--format", "alpaca", "--out", info, "--force", "--db", db)
    )
    assert "dataset_info.json" in line
    assert json.loads(info.read_text()) == {"other": {"file_name": "o.json"}}


def test_unmergeable_dataset_info_refuses_before_writing_anything(
    data: Path, tmp_path: Path
) -> None:
    db = _store_with_run(tmp_path, data, emitted=True)
    info = tmp_path / "dataset_info.json"
    info.write_text("[1, 2]")
    line = one_line_error(
        srt("export", "1", "--format", "alpaca", "--out", tmp_path / "k.json", "--db", db)
    )
    assert "left unchanged" in line
    assert info.read_text() == "[1, 2]" and not (tmp_path / "k.json").exists()


def test_empty_selection_is_refused_with_no_file_and_no_entry(data: Path, tmp_path: Path) -> None:
    db = _store_with_run(tmp_path, data, emitted=False)
    out = tmp_path / "out" / "kept.json"
    line = one_line_error(srt("export", "1", "--format", "sharegpt", "--out", out, "--db", db))
    assert "selection is empty" in line
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_export_json_summary(data: Path, tmp_path: Path) -> None:
    db = _store_with_run(tmp_path, data, emitted=True)
    result = srt(
        "export", "1", "--format", "messages", "--out", tmp_path / "m.jsonl", "--db", db, "--json"
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["written"] == 2 and summary["entry"]["m"]["formatting"] == "sharegpt"
    # every format trains on the same prompt: LLaMA-Factory joins instruction and input with "\n"
    lines = (tmp_path / "m.jsonl").read_text().splitlines()
    assert json.loads(lines[1])["messages"][0]["content"] == "Translate.\nOù est la gare ?"


def test_full_disk_while_merging_dataset_info_keeps_the_old_file(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _store_with_run(tmp_path, data, emitted=True)
    info = tmp_path / "dataset_info.json"
    info.write_text('{"other": {"file_name": "o.json"}}')
    import srt_local.formats.write as write

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(write.os, "fsync", full)
    line = one_line_error(
        srt("export", "1", "--format", "alpaca", "--out", tmp_path / "k.json", "--db", db)
    )
    assert "No space left on device" in line and "free some space" in line
    assert json.loads(info.read_text()) == {"other": {"file_name": "o.json"}}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary left


# ---------------------------------------------------------------- the machine


def test_srt_home_under_a_file_is_one_line(data: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("")
    line = one_line_error(srt("import", data, env={"SRT_HOME": str(blocker / "home")}))
    assert "afile" in line and "SRT_HOME" in line


def test_read_only_srt_home_is_one_line(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "ro"
    home.mkdir()
    home.chmod(0o500)
    if os.access(home, os.W_OK):  # root writes anywhere: make the folder refuse as it would
        real_mkdir = Path.mkdir

        def refuse(self: Path, *args: object, **kwargs: object) -> None:
            if str(self).startswith(str(home)):
                raise PermissionError(errno.EACCES, "Permission denied", str(self))
            real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(Path, "mkdir", refuse)
    try:
        line = one_line_error(srt("import", data, env={"SRT_HOME": str(home)}))
    finally:
        home.chmod(0o700)
    assert "Permission denied" in line and "$SRT_HOME" in line


def test_full_disk_in_the_store_is_one_line(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import srt_local.commands.import_cmd as import_cmd

    def full(*args: object, **kwargs: object) -> None:
        raise duckdb.IOException(
            'IO Error: Could not write file "s.duckdb.wal": No space left on device'
        )

    monkeypatch.setattr(import_cmd, "import_dataset", full)
    line = one_line_error(srt("import", data, "--db", tmp_path / "s.duckdb"))
    assert "No space left on device" in line and "free some space" in line


def test_a_full_disk_is_told_in_one_line(tmp_path: Path) -> None:
    # /dev/full: every write fails with ENOSPC, as a full disk does. This checks the message the
    # CLI gives any OSError (SrtGroup.invoke), not a whole `srt score` onto a full disk.
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    from srt_local.commands.score import _write_atomically

    with pytest.raises(OSError) as caught:
        Path("/dev/full").write_text("x")
    assert caught.value.errno == errno.ENOSPC
    from srt_local.commands.common import environment_message

    message = environment_message(caught.value)
    assert "full" in message and "\n" not in message
    _write_atomically(tmp_path / "ok.jsonl", "fine\n")  # the normal path still works


def test_truncated_gguf_in_models_is_a_row_not_a_traceback(tmp_path: Path) -> None:
    gguf = tmp_path / "cut.gguf"
    gguf.write_bytes(b"GGUF\x03\x00\x00\x00\x01")
    models = tmp_path / "models.toml"
    models.write_text(f'[students.cut]\npath = "{gguf}"\n')
    result = srt("models", "--models-file", models)
    assert result.exit_code == 0 and "Traceback" not in result.stderr
    assert "cut" in result.stdout and "no" in result.stdout
    row = next(
        m
        for m in json.loads(srt("models", "--models-file", models, "--json").stdout)["models"]
        if m["name"] == "cut"
    )
    assert row["usable"] is False and "GGUF" in row["problem"]


def test_invalid_utf8_models_toml_is_one_line(tmp_path: Path) -> None:
    models = tmp_path / "models.toml"
    models.write_bytes(b'[students.x]\npath = "caf\xe9.gguf"\n')
    line = one_line_error(srt("models", "--models-file", models))
    assert "line 2" in line and "UTF-8" in line


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_non_finite_temperature_is_one_line(tmp_path: Path, value: str) -> None:
    models = tmp_path / "models.toml"
    models.write_text(
        f'[teachers.t]\nbackend = "ollama"\nmodel = "m"\n[teachers.t.options]\ntemperature = {value}\n'
    )
    line = one_line_error(srt("models", "--models-file", models))
    assert "[teachers.t.options] key 'temperature'" in line and "finite" in line


def test_empty_sql_is_one_line(data: Path, tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    assert srt("import", data, "--db", db).exit_code == 0
    assert "empty" in one_line_error(srt("sql", "", "--db", db))
    assert "empty" in one_line_error(srt("sql", " ; ", "--db", db))


# ---------------------------------------------------------------- the CLI's own words


def test_summaries_name_the_flag_that_keeps_passed_unreflected_samples(
    data: Path, tmp_path: Path
) -> None:
    db = _store_with_run(tmp_path, data, emitted=False)
    with Store.open(db) as store:
        store.execute("UPDATE decisions SET passes = true")
    result = srt("status", "--db", db)
    assert result.exit_code == 0, result.stderr
    assert (
        "kept 0, rejected 2 (2 passed with their response unchanged, the reflected one not "
        "kept; `--emit-unreflected` keeps them)" in " ".join(result.stdout.split())
    )
    assert json.loads(srt("status", "--db", db, "--json").stdout)["passed_unreflected"] == 2


def test_run_help_documents_the_exit_codes() -> None:
    text = srt("run", "--help").stdout
    for line in ("0    done", "3    incomplete", "4    failed", "130  interrupted"):
        assert line in text, (line, text)


@pytest.mark.parametrize(
    ("fmt", "record"),
    [
        (
            "sharegpt",
            {
                "conversations": [
                    {"from": "human", "value": "Hi?"},
                    {"from": "gpt", "value": "Hello."},
                ]
            },
        ),
        (
            "messages",
            {
                "messages": [
                    {"role": "user", "content": "Hi?"},
                    {"role": "assistant", "content": "Hello."},
                ]
            },
        ),
    ],
)
def test_score_reads_conversation_files(
    tmp_path: Path, fmt: str, record: dict[str, object]
) -> None:
    from srt_local.commands.score import _read_pairs
    from srt_local.pairs import Pair

    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(record) + "\n")
    assert _read_pairs(path, None, "auto") == [Pair("Hi?", "", "Hello.")]
    assert _read_pairs(path, None, fmt) == [Pair("Hi?", "", "Hello.")]
    assert "--format" in srt("score", "--help").stdout
    wrong = srt("score", path, "--format", "alpaca", "--no-cache")
    assert wrong.exit_code == 2 and "bad record" in wrong.stderr and "Traceback" not in wrong.stderr


def test_run_progress_shows_rates_as_text_not_a_bar_of_unknown_length() -> None:
    from io import StringIO

    from rich.console import Console
    from rich.progress import MofNCompleteColumn, TextColumn

    from srt_local.commands.run_cmd import _RunProgress

    console = Console(file=StringIO(), width=100)
    progress = _RunProgress(TextColumn("{task.description}"), MofNCompleteColumn(), console=console)
    progress.add_task("decision", total=4, completed=1)
    progress.rates = "120 student tok/s  0.50 teacher calls/s  ETA 30s"
    console.print(*progress.get_renderables())
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "decision" in shown and "1/4" in shown
    assert "120 student tok/s  0.50 teacher calls/s  ETA 30s" in shown and "/?" not in shown
