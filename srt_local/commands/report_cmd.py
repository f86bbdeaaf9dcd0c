"""`srt report`: one self-contained HTML file with a run's figures, to read offline or share."""

from __future__ import annotations

from pathlib import Path

import click

from srt_local.commands.common import UserError, db_option, say
from srt_local.report.figures import ReportError, gather
from srt_local.report.html import write_report
from srt_local.store import Store


@click.command()
@click.argument("run_id", metavar="RUN", type=int)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The HTML file to write.",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Seed of the bootstrap intervals (default: each comparison's own, as `srt judge` "
    "prints them: its random draw's seed, 0 against the original).",
)
@db_option
def report(run_id: int, out: Path, seed: int | None, db_path: Path | None) -> None:
    """Write run RUN's report to --out: settings and provenance, branch counts, IFD and r-IFD
    distributions with the thresholds, kept and rejected, the judge's win rates with their
    intervals, and examples side by side. One file, no script, nothing fetched when opened.

    Example: srt judge 1 && srt report 1 --out report.html
    """
    # Opened for writing so that a store made before the judge existed gets its tables (migrated);
    # nothing is written.
    with Store.open(db_path) as store:
        try:
            data = gather(store, run_id, boot_seed=seed)
        except ReportError as exc:
            raise UserError(str(exc)) from None
    path = write_report(data, out)
    say(f"wrote {path}")
    click.echo(str(path))
