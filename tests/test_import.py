"""`srt import` into real DuckDB files: counts, duplicates, bad records, strict, re-import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from srt_local.cli import cli
from srt_local.formats import DatasetFileError
from srt_local.importer import DatasetExistsError, import_dataset
from srt_local.pairs import pair_hash
from srt_local.store import Store

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "srt_local" / "data" / "demo.jsonl"
CORPUS = Path(__file__).parent / "data" / "malformed"
TABLES = ("datasets", "samples", "import_errors")


def srt(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def counts(db: Path) -> dict[str, int]:
    with Store.open(db, read_only=True) as store:
        return {t: store.query(f"SELECT count(*) FROM {t}")[0][0] for t in TABLES}


def test_demo_data_imports_with_one_duplicate(tmp_path: Path) -> None:
    lines = DEMO.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 31
    distinct = {json.dumps(r, sort_keys=True) for r in records}
    assert len(distinct) == 30
    assert sum(1 for r in records if r["input"]) >= 3
    db = tmp_path / "s.duckdb"
    with Store.open(db) as store:
        report = import_dataset(store, DEMO, name="demo")
    assert (report.n_records, report.n_imported, report.n_duplicates, report.n_rejected) == (
        31,
        30,
        1,
        0,
    )
    with Store.open(db, read_only=True) as store:
        row = store.query_dicts("SELECT * FROM datasets")[0]
        samples = store.query_dicts("SELECT * FROM samples ORDER BY position")
    assert (row["name"], row["format"], row["source_path"]) == ("demo", "alpaca", str(DEMO))
    assert (row["n_records"], row["n_imported"], row["n_duplicates"], row["n_rejected"]) == (
        31,
        30,
        1,
        0,
    )
    assert [s["position"] for s in samples] == list(range(30))
    duplicated = [s for s in samples if s["n_copies"] == 2]
    assert len(duplicated) == 1 and sum(s["n_copies"] for s in samples) == 31
    first_line = 1 + next(i for i, line in enumerate(lines) if lines.count(line) == 2)
    assert duplicated[0]["location"] == f"line {first_line}"
    for s in samples:
        assert s["pair_hash"] == pair_hash(s["instruction"], s["input"], s["output"])
        assert json.loads(lines[int(s["location"].split()[1]) - 1]) == {
            "instruction": s["instruction"],
            "input": s["input"],
            "output": s["output"],
        }


def test_bad_records_are_stored_with_their_reasons(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    with Store.open(db) as store:
        report = import_dataset(store, CORPUS / "wrong_types.json")
    assert report.name == "wrong_types"
    assert (report.n_records, report.n_imported, report.n_rejected) == (5, 2, 3)
    with Store.open(db, read_only=True) as store:
        errors = store.query(
            "SELECT location, field, reason, record FROM import_errors e "
            "JOIN datasets d USING (dataset_id) WHERE d.name = 'wrong_types'"
        )
        stored = store.query("SELECT location, instruction FROM samples ORDER BY position")
    assert sorted(errors) == sorted(
        [
            (
                "index 1 (line 3)",
                "output",
                "expected a string, got 12",
                '{"instruction": "Add 5 and 7.", "input": "", "output": 12}',
            ),
            (
                "index 2 (line 4)",
                "instruction",
                "expected a string, got a list of 3",
                '{"instruction": ["Name", "a", "shape."], "input": 3, "output": "Circle."}',
            ),
            (
                "index 2 (line 4)",
                "input",
                "expected a string, got 3",
                '{"instruction": ["Name", "a", "shape."], "input": 3, "output": "Circle."}',
            ),
            (
                "index 3 (line 5)",
                None,
                'expected a JSON object, got "just a string"',
                '"just a string"',
            ),
        ]
    )
    assert stored == [
        ("index 0 (line 2)", "Name a colour."),
        ("index 4 (line 6)", "Name an animal."),
    ]


def test_long_bad_records_are_truncated_in_the_store(tmp_path: Path) -> None:
    data = tmp_path / "long.jsonl"
    good = {"instruction": "Q", "output": "A"}
    data.write_text(json.dumps(good) + "\n" + json.dumps({"instruction": "x" * 2000}) + "\n")
    db = tmp_path / "s.duckdb"
    with Store.open(db) as store:
        import_dataset(store, data)
        (record,) = store.query("SELECT record FROM import_errors")[0]
    assert len(record) == 500 and record.endswith("...")


def test_strict_refuses_the_whole_file(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    result = srt("import", CORPUS / "messages_multiturn.jsonl", "--strict", "--db", db)
    assert result.exit_code == 2
    assert "--strict: 4 of 6 records are bad; nothing written" in result.stderr
    for location in ("line 2", "line 3", "line 5", "line 6"):
        assert f"messages_multiturn.jsonl: {location}: field 'messages" in result.stderr
    assert counts(db) == dict.fromkeys(TABLES, 0)
    # the same file without --strict imports its two good conversations (line 4: list content)
    result = srt("import", CORPUS / "messages_multiturn.jsonl", "--db", db)
    assert result.exit_code == 0, result.output
    assert "warning: 4 bad records not imported" in result.stderr
    assert counts(db) == {"datasets": 1, "samples": 2, "import_errors": 4}
    with Store.open(db, read_only=True) as store:
        assert store.query("SELECT format, n_turns_skipped FROM datasets") == [("messages", 3)]


def test_strict_with_a_clean_file_imports(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    result = srt("import", DEMO, "--strict", "--name", "d", "--db", db)
    assert result.exit_code == 0, result.output
    assert "imported (distinct pairs)" in result.stdout and "30" in result.stdout
    assert counts(db) == {"datasets": 1, "samples": 30, "import_errors": 0}


def test_stderr_lists_the_first_bad_records_then_a_count(tmp_path: Path) -> None:
    data = tmp_path / "many.jsonl"
    rows = [{"instruction": f"Q{i}", "output": "" if i % 2 else "A"} for i in range(60)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = srt("import", data, "--db", tmp_path / "s.duckdb")
    assert result.exit_code == 0
    assert result.stderr.count("bad record:") == 20
    assert "many.jsonl: line 2: field 'output': empty" in result.stderr
    assert "... and 10 more problems" in result.stderr
    assert counts(tmp_path / "s.duckdb")["import_errors"] == 30


def test_reimport_and_name_clashes(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(DEMO.read_bytes())
    with Store.open(db) as store:
        first = import_dataset(store, DEMO, name="demo")
        again = import_dataset(store, copy, name="demo")  # same bytes, another path
        assert again.already_imported and again.dataset_id == first.dataset_id
        assert (again.n_imported, again.n_duplicates) == (30, 1)
        other = tmp_path / "demo.jsonl"
        other.write_text(json.dumps({"instruction": "Q", "output": "A"}) + "\n")
        with pytest.raises(DatasetExistsError, match="a dataset named 'demo' already exists"):
            import_dataset(store, other)
        renamed = import_dataset(store, other, name="demo2")
        assert renamed.n_imported == 1
    assert counts(db) == {"datasets": 2, "samples": 31, "import_errors": 0}
    result = srt("import", DEMO, "--name", "demo", "--db", db)
    assert result.exit_code == 0 and "already imported as dataset 'demo'" in result.stderr
    result = srt("import", other, "--name", "demo", "--db", db)
    assert result.exit_code == 2 and "already exists" in result.stderr
    assert counts(db) == {"datasets": 2, "samples": 31, "import_errors": 0}


def test_a_file_with_no_good_record_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"instruction": "Q", "output": ""}\n')
    db = tmp_path / "s.duckdb"
    with Store.open(db) as store:
        report = import_dataset(store, data)
    assert report.refused == "no valid record among 1; nothing written"
    assert counts(db) == dict.fromkeys(TABLES, 0)


def test_an_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    with Store.open(db) as store, pytest.raises(DatasetFileError):
        import_dataset(store, CORPUS / "truncated.json")
    result = srt("import", CORPUS / "truncated.json", "--db", db)
    assert result.exit_code == 2
    assert "truncated.json: line 3 column 64: the JSON ends early" in result.stderr
    assert counts(db) == dict.fromkeys(TABLES, 0)


def test_the_installed_command(tmp_path: Path) -> None:
    srt_bin = Path(sys.executable).with_name("srt")
    db = tmp_path / "s.duckdb"
    done = subprocess.run(
        [srt_bin, "import", CORPUS / "sharegpt_roles.json", "--format", "sharegpt", "--db", db],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "sharegpt_roles.json: index 2 (line 10): field 'conversations[1].from'" in done.stderr
    assert "conversation turns skipped" in done.stdout
    assert counts(db) == {"datasets": 1, "samples": 2, "import_errors": 4}


def test_an_empty_name_is_refused(tmp_path: Path) -> None:
    result = srt("import", DEMO, "--name", " ", "--db", tmp_path / "s.duckdb")
    assert result.exit_code == 2 and "a dataset needs a non-empty name" in result.stderr


def test_a_failed_import_leaves_nothing(tmp_path: Path) -> None:
    import duckdb

    db = tmp_path / "s.duckdb"
    with Store.open(db) as store:
        # a stray sample already holds (dataset 1, position 0): the import's insert must fail
        store.execute(
            "INSERT INTO samples (dataset_id, position, location, instruction, input, output, "
            "pair_hash) VALUES (1, 0, 'line 1', 'Q', '', 'A', 'h')"
        )
        with pytest.raises(duckdb.ConstraintException):
            import_dataset(store, DEMO)
    assert counts(db) == {"datasets": 0, "samples": 1, "import_errors": 0}


def test_a_raw_control_character_in_json_is_named_whole(tmp_path: Path) -> None:
    data = tmp_path / "raw.jsonl"
    good = '{"instruction": "a", "input": "", "output": "b"}\n'
    data.write_text(good + '{"instruction": "x\x1by", "input": "", "output": "b"}\n')
    result = srt("import", data, "--db", tmp_path / "s.duckdb")
    assert result.exit_code == 0, result.output
    line = next(x for x in result.stderr.splitlines() if "line 2" in x)
    assert line.endswith("invalid JSON at column 19: Invalid control character"), line


def test_the_same_file_under_another_name_is_imported_with_a_notice(tmp_path: Path) -> None:
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"instruction": "a", "input": "", "output": "b"}\n')
    db = tmp_path / "s.duckdb"
    assert srt("import", data, "--db", db).exit_code == 0
    again = srt("import", data, "--name", "copy", "--db", db)
    assert again.exit_code == 0, again.output
    assert "imported before, as 'pairs'" in again.stderr
    quiet = srt("import", data, "--db", db)  # the same name: already imported, nothing new
    assert "imported before" not in quiet.stderr
