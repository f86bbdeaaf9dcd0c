"""`srt sql`: read-only SQL on the store, printed as a table, CSV or JSON."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from srt_local.commands.common import cell, counted, db_option, json_text, out_console, say
from srt_local.readonly_sql import open_reader, run_sql
from srt_local.textsafe import visible


def _jsonable(value: Any) -> Any:
    """A DuckDB value as JSON: lists, structs and maps nested (not their Python repr), and a
    non-finite float as null (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def _json_keys(names: list[str]) -> list[str]:
    """Column names as JSON keys: a repeated name gets a suffix (a, a_1), so no value is lost."""
    keys: list[str] = []
    for name in names:
        key, n = name, 0
        while key in keys:
            n += 1
            key = f"{name}_{n}"
        keys.append(key)
    return keys


@click.command()
@click.argument("query")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@click.option(
    "--snapshot",
    is_flag=True,
    help="Query a copy of the store taken now (works while another process writes it).",
)
@db_option
def sql(query: str, fmt: str, snapshot: bool, db_path: Path | None) -> None:
    """Run QUERY read-only on the store. Tables: datasets, samples, import_errors, teacher_calls,
    versions, reflection_failures, scores, runs, decisions, judge_calls, judgements,
    judge_overrides; views: kept_samples, selection.

    Example: srt sql "SELECT branch, count(*) FROM decisions GROUP BY branch"
    """
    with open_reader(db_path, snapshot) as store:
        result = run_sql(store, query)
    names, rows = result.columns, result.rows()
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        if sys.stdout.isatty():
            # On a terminal, text is shown, never obeyed: control characters as stand-ins. Piped
            # or redirected, the CSV holds the stored bytes exactly.
            names = [visible(n) for n in names]
            rows = [tuple(visible(v) if isinstance(v, str) else v for v in row) for row in rows]
        writer.writerow(names)
        writer.writerows(rows)
    elif fmt == "json":
        keys = _json_keys(names)
        for row in rows:
            click.echo(json_text({k: _jsonable(v) for k, v in zip(keys, row, strict=True)}))
    else:
        # Text cells: a cell (or a column name) is data, never Rich markup; controls made visible.
        table = Table()
        for name in names:
            table.add_column(cell(name))
        for row in rows:
            table.add_row(*[cell(v) for v in row])
        out_console.print(table)
        say(counted(len(rows), "row"))
