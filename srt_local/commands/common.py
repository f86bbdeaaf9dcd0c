"""What every subcommand shares: the console on stderr, --db, and errors as messages, not tracebacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console

from srt_local.config import ConfigError
from srt_local.model_files import ModelFileError
from srt_local.pipeline import PipelineError
from srt_local.store import StoreError
from srt_local.teachers.base import TeacherError

# Data goes to stdout; progress and diagnostics go here.
# soft_wrap: a message naming a file and line stays on one line, whatever the terminal's width.
err_console = Console(stderr=True, soft_wrap=True)

EXIT_USAGE = 2
EXIT_FAILED = 1


class UserError(click.ClickException):
    """A problem the user can fix, printed as one clear message."""

    exit_code = EXIT_USAGE


db_option = click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The store (a DuckDB file). Default: srt.duckdb in the data dir ($SRT_HOME moves it).",
)


def run_cli(group: click.Group) -> int:
    """Run the click group, turning known errors into one-line messages and exit codes."""
    try:
        group.main(standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("[yellow]interrupted[/]")
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (ConfigError, ModelFileError, StoreError, PipelineError, TeacherError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted: what was stored is kept; run again to resume[/]")
        return 130
    except SystemExit as exc:
        code: Any = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
