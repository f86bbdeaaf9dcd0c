"""`srt import`: read a dataset file into the store and say what went in and what did not."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from srt_local.commands.common import (
    UserError,
    cell,
    counted,
    db_option,
    echo_json,
    err_console,
    json_option,
    out_console,
    say,
    warn,
)
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
@json_option
def import_(
    file: Path, fmt: str, name: str | None, strict: bool, db_path: Path | None, as_json: bool
) -> None:
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
    The summary goes to stdout (--json: as one JSON object); the bad records to stderr.
    """
    max_chars = load_models().limits.import_field_chars
    with Store.open(db_path) as store:
        report = import_dataset(store, file, fmt=fmt, name=name, strict=strict, max_chars=max_chars)
        db = store.path
    if report.already_imported:
        say(
            f"{file}: already imported as dataset {report.name!r} "
            f"(id {report.dataset_id}); nothing to do"
        )
        _print_summary(report, as_json)
        return
    if report.refused:
        _print_errors(report, limit=None if strict else SHOW_ERRORS)
        raise UserError(f"{file}: {report.refused}")
    _print_summary(report, as_json)
    if report.same_content and not report.refused:
        names = ", ".join(f"'{n}'" for n in report.same_content)
        warn(f"this file's content was imported before, as {names}; both datasets now hold it")
    if report.errors:
        _print_errors(report, limit=SHOW_ERRORS)
        warn(
            f"{counted(report.n_rejected, 'bad record')} not imported "
            f"({counted(report.n_problems, 'problem')}); all are in "
            f'the store: srt sql "SELECT * FROM import_errors WHERE dataset_id = '
            f'{report.dataset_id}" --db {db}'
        )


def _print_summary(report: ImportReport, as_json: bool = False) -> None:
    counts = {
        "records in the file": report.n_records,
        "imported (distinct pairs)": report.n_imported,
        "duplicate copies folded": report.n_duplicates,
        "rejected records": report.n_rejected,
        "conversation turns skipped": report.n_turns_skipped,
    }
    if as_json:
        echo_json(
            {
                "dataset": report.name,
                "dataset_id": report.dataset_id,
                "file": str(report.path),
                "format": report.format,
                "already_imported": report.already_imported,
                "records": report.n_records,
                "imported": report.n_imported,
                "duplicates": report.n_duplicates,
                "rejected": report.n_rejected,
                "problems": report.n_problems,
                "turns_skipped": report.n_turns_skipped,
            }
        )
        return
    # The name is data: a Text title, never read as markup ("llama[/INST]" is a fine name).
    title = Text("Dataset ") + cell(f"'{report.name}'")
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("format", cell(report.format))
    for what, n in counts.items():
        table.add_row(what, str(n))
    out_console.print(table)


def _print_errors(report: ImportReport, limit: int | None) -> None:
    """The first problems (all that the report keeps if `limit` is None), then how many more."""
    errors = report.errors
    shown = errors if limit is None else errors[:limit]
    for error in shown:
        err_console.print(Text.assemble(("bad record: ", "red"), cell(error)))
    if report.n_problems > len(shown):
        say(f"... and {report.n_problems - len(shown)} more problems")
