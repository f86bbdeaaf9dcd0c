"""What every subcommand shares: the console on stderr, --db, and errors as messages, not tracebacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.text import Text

from srt_local.errors import SrtError

# Data goes to stdout; progress and diagnostics go here.
# soft_wrap: a message naming a file and line stays on one line, whatever the terminal's width.
err_console = Console(stderr=True, soft_wrap=True)

EXIT_USAGE = 2
EXIT_FAILED = 1


class UserError(SrtError):
    """A problem with what a command was given, that the user can fix."""


def report_error(message: str) -> None:
    """One line on stderr; the message is printed as it is (no markup, no emoji codes)."""
    err_console.print(Text.assemble(("error: ", "bold red"), message), highlight=False)


class ReportedError(click.ClickException):
    """An SrtError on its way out of click: shown as one line, exit code EXIT_USAGE."""

    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        report_error(self.message)


class SrtGroup(click.Group):
    """The `srt` group. The one place where an SrtError from any command becomes a message."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SrtError as exc:
            raise ReportedError(str(exc)) from None


db_option = click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The store (a DuckDB file). Default: srt.duckdb in the data dir ($SRT_HOME moves it).",
)


def run_cli(group: click.Group) -> int:
    """Run the click group; SrtGroup has already turned SrtErrors into ClickExceptions."""
    try:
        group.main(standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("[yellow]interrupted[/]")
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted: what was stored is kept; run again to resume[/]")
        return 130
    except SystemExit as exc:
        code: Any = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
