"""`srt sql`: read-only SQL on the store, printed as a table, CSV or JSON."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import click
import duckdb
from rich.console import Console
from rich.table import Table

from srt_local.commands.common import UserError, db_option
from srt_local.store import Store


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
    opened = Store.open_snapshot(db_path) if snapshot else Store.open(db_path, read_only=True)
    with opened as store:
        try:
            cur = store.con.execute(query)
        except duckdb.Error as exc:
            raise UserError(f"SQL error: {exc}") from None
        names = [d[0] for d in cur.description or []]
        rows = cur.fetchall()
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(names)
        writer.writerows(rows)
    elif fmt == "json":
        for row in rows:
            click.echo(
                json.dumps(
                    {k: _jsonable(v) for k, v in zip(names, row, strict=True)}, ensure_ascii=False
                )
            )
    else:
        table = Table(*names)
        for row in rows:
            table.add_row(*["NULL" if v is None else str(v) for v in row])
        Console().print(table)
        click.echo(f"{len(rows)} row{'s' if len(rows) != 1 else ''}", err=True)
