"""Stored text reaches a terminal with its control characters shown, never obeyed: a sample whose
input is `\\x1b[2J\\x1b[H` cleared the whole TUI from Browse's detail pane."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa

from srt_local.review import VersionView
from srt_local.visible import visible
from tui.widgets.arrow_table import shown
from tui.widgets.sample_view import side

ANSI = "Print \x1b[31mred\x1b[0m\r over \x9b2J \x7f"


def test_control_characters_become_their_pictures() -> None:
    assert visible(ANSI) == "Print ␛[31mred␛[0m␍ over \ufffd2J ␡"
    # Tabs, newlines and every other character (RTL, emoji) stay as they are.
    kept = "a\tb\nשלום مرحبا 🙂"
    assert visible(kept) is kept


def test_tables_and_the_detail_pane_show_them() -> None:
    table = pa.table({"text": [ANSI, None, "plain"], "n": [1, 2, 3]})
    assert shown(table).column("text").to_pylist() == [visible(ANSI), None, "plain"]
    version = VersionView("ori", ANSI, "\x1b[2J\x1b[H", "ok", None, 0.5, 0.5, "ok")
    plain = side("original", version, version, "bold").plain
    assert "\x1b" not in plain and "␛[2J␛[H" in plain


def test_srt_sql_shows_them_in_a_table_and_keeps_them_in_csv(tmp_path: Path) -> None:
    data = tmp_path / "ansi.json"
    data.write_text(json.dumps([{"instruction": ANSI, "input": "", "output": "x y z"}]))
    db = str(tmp_path / "s.duckdb")

    def srt(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "srt_local.cli", *args, "--db", db]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    assert srt("import", str(data)).returncode == 0
    table = srt("sql", "SELECT instruction FROM samples")
    assert table.returncode == 0, table.stderr
    assert "\x1b" not in table.stdout and "␛[31mred" in table.stdout
    csv = srt("sql", "SELECT instruction FROM samples", "--format", "csv")
    assert "\x1b[31mred" in csv.stdout
