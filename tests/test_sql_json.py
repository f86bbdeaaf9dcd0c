"""`srt sql --format json` writes JSON for every DuckDB value: nested lists and structs, no NaN,
and no value lost to a repeated column name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from srt_local.store import Store


def test_json_output_is_json_and_keeps_every_column(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    Store.open(db).close()
    query = (
        "SELECT [1, 2] AS l, {'a': 1, 'b': [{'c': 'nan'::DOUBLE}]} AS s, MAP {'k': 1} AS mp, "
        "'inf'::DOUBLE AS f, 1 AS a, 2 AS a"
    )
    out = subprocess.run(
        [sys.executable, "-m", "srt_local.cli", "sql", query, "--format", "json", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    # Strict JSON: Python's parser would accept NaN, so refuse it here.
    row = json.loads(out.stdout, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert row == {
        "l": [1, 2],
        "s": {"a": 1, "b": [{"c": None}]},
        "mp": {"k": 1},
        "f": None,
        "a": 1,
        "a_1": 2,
    }
