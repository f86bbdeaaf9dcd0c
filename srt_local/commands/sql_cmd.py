"""`srt sql`: read-only SQL on the store, printed as a table, CSV or JSON."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from srt_local.commands.common import cell, db_option, json_text, out_console, say
from srt_local.readonly_sql import open_reader, run_sql


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


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
    versions, reflection_failures, scores, runs, decisions; view: selection.

    Example: srt sql "SELECT branch, count(*) FROM decisions GROUP BY branch"
    """
    with open_reader(db_path, snapshot) as store:
        result = run_sql(store, query)
    names, rows = result.columns, result.rows()
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(names)
        writer.writerows(rows)
    elif fmt == "json":
        for row in rows:
            click.echo(json_text({k: _jsonable(v) for k, v in zip(names, row, strict=True)}))
    else:
        # Text cells: a cell (or a column name) is data, never Rich markup; controls made visible.
        table = Table()
        for name in names:
            table.add_column(cell(name))
        for row in rows:
            table.add_row(*[cell(v) for v in row])
        out_console.print(table)
        say(f"{len(rows)} row{'s' if len(rows) != 1 else ''}")
