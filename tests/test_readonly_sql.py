"""Read-only SQL (srt_local.readonly_sql): DuckDB refuses every writing form, from `srt sql`, its
--snapshot and the TUI's reader alike; the snapshot case first, since it once destroyed a store."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from srt_local.cli import cli
from srt_local.importer import import_dataset
from srt_local.readonly_sql import LiveReader, SqlError, SqlRefused, open_reader, run_sql
from srt_local.store import Store

SAMPLE = Path(__file__).resolve().parents[1] / "srt_local" / "data" / "sample.jsonl"
COUNTS = "SELECT (SELECT count(*) FROM datasets), (SELECT count(*) FROM samples)"


def srt(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "s.duckdb"
    with Store.open(path) as store:
        import_dataset(store, SAMPLE, name="sample")
    return path


def counts(db: Path) -> tuple[int, int]:
    with Store.open(db, read_only=True) as store:
        (row,) = store.query(COUNTS)
    return int(row[0]), int(row[1])


@pytest.fixture
def writer(db: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the store for writing, as `srt import` or `srt run` does."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import pathlib, time; from srt_local.store import Store; "
            f"s = Store.open(pathlib.Path({str(db)!r})); print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
    yield holder
    holder.kill()
    holder.wait()


def test_snapshot_cannot_overwrite_the_live_store(db: Path, writer: subprocess.Popen[str]) -> None:
    before = counts_while_held(db)
    size = db.stat().st_size
    result = srt("sql", "--snapshot", f"COPY (SELECT 'x') TO '{db}' (FORMAT csv)", "--db", db)
    assert result.exit_code == 2, result.output
    assert "read-only: COPY refused" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert db.stat().st_size == size
    writer.kill()
    writer.wait()
    assert counts(db) == before == (1, 10)


def counts_while_held(db: Path) -> tuple[int, int]:
    with open_reader(db, snapshot=True) as store:
        (row,) = run_sql(store, COUNTS).rows()
    return int(row[0]), int(row[1])


def test_plain_sql_while_a_writer_holds_the_store_points_to_snapshot(
    db: Path, writer: subprocess.Popen[str]
) -> None:
    result = srt("sql", "SELECT 1", "--db", db)
    assert result.exit_code == 2 and "--snapshot" in result.stderr
    result = srt(
        "sql", "--snapshot", "SELECT count(*) AS n FROM samples", "--db", db, "--format", "json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"n": 10}


def test_copy_to_the_store_itself_is_refused(db: Path) -> None:
    before = counts(db)
    result = srt("sql", f"COPY (SELECT 'x') TO '{db}' (FORMAT csv)", "--db", db)
    assert result.exit_code == 2 and "read-only: COPY refused" in result.stderr
    assert counts(db) == before


# Every form that writes: the store, another file, a setting, an extension.
WRITES = [
    ("INSERT INTO datasets (name) VALUES ('x')", "INSERT", "change the store"),
    ("UPDATE samples SET output = 'x'", "UPDATE", "change the store"),
    ("DELETE FROM samples", "DELETE", "change the store"),
    ("CREATE TABLE x (a INT)", "CREATE", "change the store"),
    ("CREATE VIEW v AS SELECT 1", "CREATE", "change the store"),
    ("DROP TABLE samples", "DROP", "change the store"),
    ("SELECT nextval('run_ids')", "SELECT", "change the store"),
    ("SELECT 1; DELETE FROM samples", "DELETE", "change the store"),
    ("COPY (SELECT 1) TO '{out}'", "COPY", "file outside the store"),
    ("COPY samples TO '{out}' (FORMAT parquet)", "COPY", "file outside the store"),
    ("EXPORT DATABASE '{out}'", "EXPORT", "file outside the store"),
    ("ATTACH '{out}' AS other", "ATTACH", "file outside the store"),
    ("SELECT * FROM read_csv('{sample}')", "SELECT", "file outside the store"),
    ("INSTALL httpfs", "INSTALL", "file outside the store"),
    ("LOAD httpfs", "LOAD", "extension"),
    ("SET memory_limit = '1MB'", "SET", "setting"),
    ("RESET memory_limit", "RESET", "setting"),
    ("SET threads = 1", "SET", "setting"),
    ("PRAGMA memory_limit = '1MB'", "PRAGMA", "setting"),
    ("PRAGMA enable_profiling", "PRAGMA", "setting"),
    ("EXPLAIN ANALYZE COPY (SELECT 1) TO '{out}'", "EXPLAIN", "file outside the store"),
    ("EXPLAIN ANALYZE SET memory_limit = '1MB'", "EXPLAIN", "setting"),
    ("EXPLAIN ANALYZE INSERT INTO datasets (name) VALUES ('x')", "EXPLAIN", "change the store"),
]


@pytest.mark.parametrize(("sql", "kind", "why"), WRITES, ids=[w[0][:40] for w in WRITES])
def test_every_writing_form_is_refused(
    db: Path, tmp_path: Path, sql: str, kind: str, why: str
) -> None:
    out = tmp_path / "out" / "x.csv"
    out.parent.mkdir()
    query = sql.format(out=out, sample=SAMPLE)
    with open_reader(db) as store:
        setting = run_sql(store, "SELECT current_setting('memory_limit')").rows()
        with pytest.raises(SqlRefused) as refused:
            run_sql(store, query)
        assert run_sql(store, "SELECT current_setting('memory_limit')").rows() == setting
    message = str(refused.value)
    assert message.startswith(f"read-only: {kind} refused") and why in message
    assert "\n" not in message
    assert list(out.parent.iterdir()) == []
    assert counts(db) == (1, 10)


def test_cli_and_reader_give_the_same_message(db: Path, tmp_path: Path) -> None:
    query = f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'"
    with open_reader(db) as store, pytest.raises(SqlRefused) as refused:
        run_sql(store, query)
    result = srt("sql", query, "--db", db)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {refused.value}"
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("query", ["", "   ", ";", "/* only a comment */"])
def test_an_empty_query_is_a_message(db: Path, query: str) -> None:
    result = srt("sql", query, "--db", db)
    assert result.exit_code == 2, result.output
    assert "nothing to run" in result.stderr and "Traceback" not in result.stderr


def test_errors_and_cells_are_printed_as_they_are(db: Path) -> None:
    result = srt("sql", 'SELECT * FROM "[red]x[/] :x:"', "--db", db)
    assert result.exit_code == 2 and "SQL error" in result.stderr
    assert "[red]x[/] :x:" in result.stderr
    result = srt("sql", "SELECT '[/INST] :x: [bold]b' AS \"[i]c\"", "--db", db)
    assert result.exit_code == 0, result.output
    assert "[/INST] :x: [bold]b" in result.stdout and "[i]c" in result.stdout


def test_reading_works_and_results_are_typed(db: Path) -> None:
    with open_reader(db) as store:
        for query in (
            "WITH a AS (SELECT 1) SELECT * FROM a",
            "FROM samples",
            "DESCRIBE samples",
            "SHOW TABLES",
            "SUMMARIZE samples",
            "EXPLAIN SELECT 1",
            "PRAGMA table_info('runs')",
            "SELECT 1; SELECT 2",
        ):
            assert run_sql(store, query).columns
        capped = run_sql(store, "SELECT position, 1 AS a, 2 AS a FROM samples ORDER BY 1", cap=2)
        table = run_sql(store, "SELECT position FROM samples ORDER BY 1", cap=3, arrow=True)
        values = run_sql(store, "SELECT sum(position) AS s, count(*) AS n FROM samples")
    assert capped.total == 10 and capped.truncated and capped.shown == 2
    assert capped.rows() == [(0, 1, 2), (1, 1, 2)]
    assert capped.columns[0] == "position" and len(capped.columns) == 3
    assert table.table is not None and table.table.num_rows == 3 and table.total == 10
    assert table.rows() == [(0,), (1,), (2,)] and table.truncated
    # DuckDB's own Python values, as `srt sql --format json` printed them before: 45, not "45"
    assert values.rows() == [(45, 10)] and not values.truncated


def test_user_sql_needs_a_sandboxed_store(db: Path) -> None:
    with Store.open(db, read_only=True) as store, pytest.raises(SqlError, match="sandboxed"):
        run_sql(store, "SELECT 1")
    with Store.open(db, read_only=True) as store, pytest.raises(Exception, match="sandboxed"):
        store.cursor().__enter__()


def test_live_reader_follows_the_store_and_refuses_writes(db: Path, tmp_path: Path) -> None:
    with Store.open(db) as store:
        reader = LiveReader(store)
        try:
            assert reader.run("SELECT count(*) FROM datasets").rows() == [(1,)]
            with pytest.raises(SqlRefused, match="read-only: DELETE refused"):
                reader.run("DELETE FROM samples")
            with pytest.raises(SqlRefused, match="read-only: COPY refused"):
                reader.run(f"COPY (SELECT 'x') TO '{db}' (FORMAT csv)")
            more = tmp_path / "more.jsonl"
            more.write_text(json.dumps({"instruction": "Q", "output": "A"}) + "\n")
            import_dataset(store, more)
            assert reader.run("SELECT count(*) FROM datasets").rows() == [(2,)]
            assert store.query("SELECT count(*) FROM samples") == [(11,)]
        finally:
            reader.close()
