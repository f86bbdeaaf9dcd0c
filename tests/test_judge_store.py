"""The judge's migration upgrades a store made before it, and the selection view's precedence."""

from __future__ import annotations

from pathlib import Path

import duckdb

from srt_local.judge.overrides import unapply
from srt_local.migrations import MIGRATIONS
from srt_local.review import set_override
from srt_local.store import Store
from tests.tui_support import build_store


def test_a_store_from_before_the_judge_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE _migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP)")
    name, sql = MIGRATIONS[0]
    con.execute(sql)
    con.execute("INSERT INTO _migrations (name) VALUES (?)", [name])
    con.close()
    with Store.open(path) as store:
        tables = {r[0] for r in store.query("SELECT table_name FROM information_schema.tables")}
        assert {"judge_calls", "judgements", "judge_overrides", "selection"} <= tables


def test_selection_follows_a_person_then_the_judge_then_the_decision(tmp_path: Path) -> None:
    store, run_id = build_store(tmp_path)
    try:

        def kept() -> set[int]:
            rows = store.query("SELECT sample_id FROM selection WHERE run_id = ?", [run_id])
            return {int(r[0]) for r in rows}

        emitted = kept()
        first = min(emitted)
        with store.transaction() as con:
            con.execute(
                "INSERT INTO judge_overrides (run_id, sample_id, override, judge_key, against, "
                "seed, reason) VALUES (?, ?, 'reject', 'k', 'original', 0, 'lost both')",
                [run_id, first],
            )
        assert kept() == emitted - {first}
        set_override(store, run_id, first, "accept")
        assert kept() == emitted
        set_override(store, run_id, first, None)
        assert kept() == emitted - {first}
        assert unapply(store, run_id) == 1
        assert kept() == emitted
    finally:
        store.close()


def test_judge_and_report_import_neither_textual_nor_llama_cpp() -> None:
    import subprocess
    import sys

    modules = [
        "srt_local.judge.runner",
        "srt_local.judge.results",
        "srt_local.judge.overrides",
        "srt_local.report.html",
        "srt_local.commands.judge_cmd",
        "srt_local.commands.report_cmd",
    ]
    code = (
        "import sys, importlib\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(','.join(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('textual', 'llama_cpp', 'tui'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
