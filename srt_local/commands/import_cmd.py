"""`srt import`: read a dataset file into the store and say what went in and what did not."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from srt_local.commands.common import UserError, db_option, err_console
from srt_local.config import load_models
from srt_local.formats import FORMATS
from srt_local.importer import ImportReport, import_dataset
from srt_local.store import Store

SHOW_ERRORS = 20  # bad records listed on stderr before "and N more"


@click.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", *FORMATS]),
    default="auto",
    show_default=True,
    help="The record format; auto reads it from the first record.",
)
@click.option("--name", default=None, help="The dataset's name. Default: the file name's stem.")
@click.option(
    "--strict",
    is_flag=True,
    help="Refuse the whole file if any record is bad (nothing is written).",
)
@db_option
def import_(file: Path, fmt: str, name: str | None, strict: bool, db_path: Path | None) -> None:
    """Import FILE (.json array, .jsonl, .csv or .parquet) as a dataset.

    \b
    Formats:
      alpaca    {"instruction", "input" (optional), "output"}
      sharegpt  {"conversations": [{"from": "human"|"gpt"|"system", "value"}]}
      messages  {"messages": [{"role": "user"|"assistant"|"system", "content"}]}
    A conversation gives one pair: its first user turn and the reply after it. A system prompt and
    every later turn are dropped and counted as "turns skipped".

    Bad records are listed (file, line or index, field, reason) and kept in the store's
    import_errors table; the good ones go in. Exact duplicates are stored once and counted.
    """
    max_chars = load_models().limits.import_field_chars
    with Store.open(db_path) as store:
        report = import_dataset(store, file, fmt=fmt, name=name, strict=strict, max_chars=max_chars)
        db = store.path
    if report.already_imported:
        err_console.print(
            Text(
                f"{file}: already imported as dataset {report.name!r} "
                f"(id {report.dataset_id}); nothing to do"
            ),
            highlight=False,
            soft_wrap=True,
        )
        _print_summary(report)
        return
    if report.refused:
        _print_errors(report, limit=None if strict else SHOW_ERRORS)
        raise UserError(f"{file}: {report.refused}")
    _print_summary(report)
    if report.errors:
        _print_errors(report, limit=SHOW_ERRORS)
        err_console.print(
            f"[yellow]warning:[/] {report.n_rejected} bad records were not imported "
            f"({report.n_problems} problems); all are in "
            f'the store: srt sql "SELECT * FROM import_errors WHERE dataset_id = '
            f'{report.dataset_id}" --db {db}',
            highlight=False,
            soft_wrap=True,
        )


def _print_summary(report: ImportReport) -> None:
    table = Table(title=Text(f"Dataset {report.name!r}"), title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("format", report.format)
    table.add_row("records in the file", str(report.n_records))
    table.add_row("imported (distinct pairs)", str(report.n_imported))
    table.add_row("duplicate copies folded", str(report.n_duplicates))
    table.add_row("rejected records", str(report.n_rejected))
    table.add_row("conversation turns skipped", str(report.n_turns_skipped))
    Console().print(table)


def _print_errors(report: ImportReport, limit: int | None) -> None:
    """The first problems (all that the report keeps if `limit` is None), then how many more."""
    errors = report.errors
    shown = errors if limit is None else errors[:limit]
    for error in shown:
        err_console.print(
            f"[red]bad record:[/] {escape(str(error))}", highlight=False, soft_wrap=True
        )
    if report.n_problems > len(shown):
        err_console.print(
            f"... and {report.n_problems - len(shown)} more problems", highlight=False
        )
