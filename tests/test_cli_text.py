"""Text is data in the CLI: stored and typed text is shown exactly, never read as Rich markup, with
control characters made visible, and kept byte-exact in JSON and exports (issue 9, item 1).

The hostile corpus (tests/hostile.py) goes through import, `srt sql`, `srt status`, `srt models`
errors and export here; through a run with the Ollama test server in test_cli_run_control.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from srt_local.cli import cli
from srt_local.commands.common import json_text
from srt_local.pairs import pair_hash
from srt_local.store import Store
from srt_local.textsafe import visible
from tests.hostile import HOSTILE, LONE_SURROGATE, RAW_CONTROLS, VISIBLE_MARKS, pairs

NAME = "llama[/INST] :x:"  # a dataset name that is markup and an emoji code
RUN_ERROR = f"teacher said [/INST] then {HOSTILE['ansi']}"
# Fragments without spaces (a table may wrap at spaces) that must be shown exactly.
EXACT = ("[/INST]", "print(my_list[i])", ":x:", ":smile:", "[/link]", "[bold")


def srt(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def assert_terminal_safe(text: str) -> None:
    for char in RAW_CONTROLS:
        assert char not in text, f"raw {char!r} reached the terminal"
    assert "Traceback" not in text


@pytest.fixture
def hostile_db(tmp_path: Path) -> Path:
    """The corpus imported (through the CLI) as dataset NAME; run 1 accepts every sample as is."""
    data = tmp_path / "hostile.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in pairs()), encoding="utf-8")
    db = tmp_path / "h.duckdb"
    result = srt("import", data, "--name", NAME, "--db", db)
    assert result.exit_code == 0, result.stderr
    assert NAME in result.stdout  # the summary is a result: stdout, the name exact
    with Store.open(db) as store, store.transaction() as con:
        con.execute(
            "INSERT INTO runs (dataset_id, teacher_name, teacher_key, student_name, "
            "student_sha256, template, max_tokens, emit_unreflected, config, status, error) "
            "SELECT dataset_id, 'embedded', 'tk', 'gemma', 'abc', 'vicuna', 2048, false, '{}', "
            "'failed', ? FROM datasets",
            [RUN_ERROR],
        )
        con.execute(
            "INSERT INTO versions (sample_id, teacher_key, kind, instruction, input, output, "
            "pair_hash) SELECT sample_id, '', 'ori', instruction, input, output, pair_hash "
            "FROM samples"
        )
        con.execute(
            "INSERT INTO decisions (run_id, sample_id, branch, final_kind, ifd_final, rifd_final, "
            "passes, emitted, reason) SELECT 1, sample_id, 'ori', 'ori', 0.5, 0.5, true, true, "
            "'test' FROM samples"
        )
    return db


def test_visible_shows_every_control_and_keeps_the_rest() -> None:
    for name, text in {**HOSTILE, "surrogate": LONE_SURROGATE}.items():
        shown = visible(text)
        assert_terminal_safe(shown)
        if name in VISIBLE_MARKS:
            assert VISIBLE_MARKS[name] in shown
        elif name != "surrogate":
            assert shown == text, name  # printable text is left exactly as it is
    assert visible(LONE_SURROGATE) == "broken \\ud800 surrogate"


def test_json_text_round_trips_lone_surrogates() -> None:
    value = {"reply": LONE_SURROGATE, **HOSTILE}
    text = json_text(value)
    text.encode("utf-8")  # writable as UTF-8
    assert json.loads(text) == value


def test_import_summary_and_json_show_the_name_exactly(tmp_path: Path) -> None:
    data = tmp_path / "one.jsonl"
    data.write_text(json.dumps(pairs()[0]) + "\n")
    db = tmp_path / "s.duckdb"
    result = srt("import", data, "--name", NAME, "--db", db, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["dataset"] == NAME and summary["imported"] == 1
    again = srt("import", data, "--db", db, "--name", NAME)
    assert again.exit_code == 0 and NAME in again.stdout and NAME in again.stderr


def test_import_error_listing_is_shown_exactly(tmp_path: Path) -> None:
    data = tmp_path / "[red]bad[i] :x:.jsonl"
    good = json.dumps(pairs()[0])
    bad = json.dumps({"instruction": HOSTILE["ansi"], "input": "", "output": 7})
    data.write_text(f"{good}\n{bad}\n")
    result = srt("import", data, "--db", tmp_path / "s.duckdb")
    assert result.exit_code == 0, result.stderr
    assert "bad record:" in result.stderr
    assert f"{data.name}: line 2" in result.stderr  # the file name, markup and all
    assert_terminal_safe(result.stderr)


def test_sql_table_shows_stored_text_exactly_and_visibly(hostile_db: Path) -> None:
    result = srt(
        "sql", "SELECT instruction, output FROM samples ORDER BY position", "--db", hostile_db
    )
    assert result.exit_code == 0, result.stderr
    for fragment in EXACT:
        assert fragment in result.stdout, fragment
    for mark in VISIBLE_MARKS.values():
        assert mark in result.stdout, mark
    assert "x" * 30 in result.stdout  # the long line is there, folded by the table
    assert_terminal_safe(result.stdout)


def test_sql_json_and_csv_give_the_stored_text_back_exactly(hostile_db: Path) -> None:
    result = srt(
        "sql",
        "SELECT instruction, input, output FROM samples ORDER BY position",
        "--format",
        "json",
        "--db",
        hostile_db,
    )
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows == pairs()
    assert_terminal_safe(result.stdout)  # escaped (\u001b, \u202e...), so safe to print


def test_sql_csv_on_a_terminal_shows_stand_ins_and_piped_keeps_the_bytes(hostile_db: Path) -> None:
    import csv
    import io
    import os
    import pty
    import subprocess
    import sys

    args = [sys.executable, "-m", "srt_local.cli", "sql", "SELECT instruction FROM samples"]
    args += ["--format", "csv", "--db", str(hostile_db)]
    piped = subprocess.run(args, capture_output=True, timeout=120)
    assert piped.returncode == 0, piped.stderr
    rows = list(csv.reader(io.StringIO(piped.stdout.decode("utf-8", "surrogatepass"))))
    assert sorted(r[0] for r in rows[1:]) == sorted(p["instruction"] for p in pairs())
    main, child = pty.openpty()
    with subprocess.Popen(args, stdout=child, stderr=subprocess.DEVNULL) as proc:
        os.close(child)
        shown = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            shown += chunk
        assert proc.wait(timeout=120) == 0
    os.close(main)
    # CSV ends rows with CRLF, and the terminal turns each LF into CRLF once more.
    text = shown.decode("utf-8", "surrogatepass").replace("\r\r\n", "\n").replace("\r\n", "\n")
    assert_terminal_safe(text)
    for mark in VISIBLE_MARKS.values():
        assert mark in text, mark


def test_typed_sql_text_is_not_markup(hostile_db: Path) -> None:
    result = srt("sql", "SELECT '[/INST]' AS \"[bold]x[/]\", ':x:' AS y", "--db", hostile_db)
    assert result.exit_code == 0, result.stderr
    assert "[/INST]" in result.stdout and "[bold]x[/]" in result.stdout and ":x:" in result.stdout
    bad = srt("sql", 'SELECT "[/INST] :x:" FROM samples', "--db", hostile_db)
    assert bad.exit_code == 2 and "[/INST] :x:" in bad.stderr and "Traceback" not in bad.stderr


def test_status_shows_the_dataset_name_and_error_exactly(hostile_db: Path) -> None:
    result = srt("status", "--db", hostile_db)
    assert result.exit_code == 0, result.stderr
    assert NAME in result.stdout  # on stdout, exactly
    assert "teacher said [/INST] then red \u241b[31mRED" in result.stdout
    assert_terminal_safe(result.stdout + result.stderr)
    as_json = json.loads(srt("status", "--db", hostile_db, "--json").stdout)
    assert as_json["dataset"] == NAME and as_json["error"] == RUN_ERROR
    assert as_json["kept"] == len(HOSTILE) and as_json["rejected"] == 0


@pytest.mark.parametrize(("fmt", "name"), [("alpaca", "k.json"), ("sharegpt", "k.jsonl")])
def test_export_keeps_every_string_byte_exact(
    hostile_db: Path, tmp_path: Path, fmt: str, name: str
) -> None:
    out = tmp_path / "out" / name
    result = srt("export", "1", "--format", fmt, "--out", out, "--db", hostile_db)
    assert result.exit_code == 0, result.stderr
    assert_terminal_safe(result.stderr)
    raw = out.read_bytes()
    assert b"\x1b" not in raw and b"\\u001b" in raw  # JSON's own escapes for controls
    text = raw.decode("utf-8")
    records = (
        json.loads(text)
        if name.endswith(".json")
        else [json.loads(line) for line in text.splitlines()]
    )
    if fmt == "alpaca":
        assert records == pairs()
    else:
        assert [r["conversations"][0]["value"] for r in records] == [
            f"{p['instruction']}\n{p['input']}" for p in pairs()
        ]
        assert [r["conversations"][1]["value"] for r in records] == [p["output"] for p in pairs()]


def test_models_toml_errors_keep_their_table_names(tmp_path: Path) -> None:
    models = tmp_path / "models.toml"
    models.write_text('[students.x]\npath = "a.gguf"\nbogus = ":x: [/INST]"\n')
    result = srt("models", "--models-file", models)
    assert result.exit_code == 2
    assert "[students.x] key 'bogus'" in result.stderr and "Traceback" not in result.stderr


def test_stored_pair_hash_is_unchanged_by_display(hostile_db: Path) -> None:
    # Showing text never changes it: the stored pairs hash as the originals do.
    with Store.open(hostile_db, read_only=True) as store:
        stored = store.query("SELECT pair_hash FROM samples ORDER BY position")
    assert [h for (h,) in stored] == [
        pair_hash(p["instruction"], p["input"], p["output"]) for p in pairs()
    ]
