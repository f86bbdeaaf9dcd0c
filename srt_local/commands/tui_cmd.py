"""`srt tui` (and `srt` alone): the terminal UI over one store."""

from __future__ import annotations

from pathlib import Path

import click

from srt_local.commands.common import db_option
from srt_local.store import Store


@click.command()
@db_option
@click.option(
    "--models-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An extra models.toml read after the shipped and user files.",
)
@click.option(
    "--theme",
    type=click.Choice(["auto", "dark", "light"]),
    default="auto",
    show_default=True,
    help="auto picks light when $COLORFGBG says the terminal is light; ctrl+t toggles.",
)
def tui(db_path: Path | None, models_file: Path | None, theme: str) -> None:
    """Open the terminal UI: import, run, browse every decision, chart, query and export.

    The UI holds the store for writing while it is open (DuckDB allows one writer per file), so
    `srt run`, `srt import` or `srt sql` on the same store are refused until you quit. A run
    started in the UI is paused when you quit, and resumed from the Run tab (key u).

    Keys: 1-8 switch tabs, escape leaves a text field, ctrl+t light/dark, ctrl+q quits; each
    tab's own keys are in the footer.
    """
    from tui.app import SrtApp

    with Store.open(db_path) as store:
        SrtApp(store, models_file=models_file, theme=None if theme == "auto" else theme).run()
