"""What every subcommand shares: the two consoles, --db, and errors as messages, not tracebacks."""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path
from typing import Any

import click
import duckdb
from rich.console import Console
from rich.text import Text

from srt_local.errors import SrtError
from srt_local.store import Store, StoreBusyError, StoreError
from srt_local.textsafe import UNSAFE, visible

# Stored and typed text is data: neither console reads markup, emoji codes or "highlights" numbers
# and paths in what it prints. Styles are given as Text styles, never as markup in a string.
_PLAIN: dict[str, Any] = {"markup": False, "emoji": False, "highlight": False}
# Results go to stdout.
out_console = Console(**_PLAIN)
# Progress and diagnostics go here. soft_wrap: a message naming a file and line stays on one line,
# whatever the terminal's width.
err_console = Console(stderr=True, soft_wrap=True, **_PLAIN)

EXIT_USAGE = 2
EXIT_FAILED = 1


class UserError(SrtError):
    """A problem with what a command was given, that the user can fix."""


def cell(value: Any) -> Text:
    """A table cell (or title) holding `value` exactly as text, control characters made visible."""
    return Text(visible("NULL" if value is None else str(value)))


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """'1 teacher call', '2 teacher calls'."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def say(message: str, style: str | None = None) -> None:
    """One diagnostic on stderr, shown exactly (control characters made visible)."""
    err_console.print(Text(visible(message), style=style or ""))


def warn(message: str) -> None:
    err_console.print(Text.assemble(("warning: ", "yellow"), visible(message)))


def json_text(value: Any, **kwargs: Any) -> str:
    """`value` as JSON with text kept readable (ensure_ascii off) and every character a terminal
    would act on escaped as \\uXXXX (json.dumps escapes C0 itself), so the result is valid UTF-8,
    safe to print, and json.loads gives back exactly `value`."""
    text = json.dumps(value, ensure_ascii=False, **kwargs)
    # json.dumps has escaped C0 in strings (a raw tab or newline left is indent=); DEL, C1, bidi
    # controls and lone surrogates are left for this.
    return UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def echo_json(value: Any) -> None:
    """A result as JSON on stdout."""
    click.echo(json_text(value, indent=2, default=str))


def report_error(message: str) -> None:
    """One line on stderr; the message is printed as it is (no markup, no emoji codes)."""
    err_console.print(Text.assemble(("error: ", "bold red"), visible(message)))


class ReportedError(click.ClickException):
    """An SrtError on its way out of click: shown as one line, exit code EXIT_USAGE."""

    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        report_error(self.message)


def io_message(exc: duckdb.IOException) -> str:
    text = re.sub(r"\s+", " ", str(exc)).strip()
    lowered = text.lower()
    if "no space left" in lowered:
        return (
            f"{text}; the disk is full: free some space (or move the store with --db), then retry"
        )
    if "permission denied" in lowered or "read-only file system" in lowered:
        return f"{text}; fix the folder's permissions or point --db ($SRT_HOME) elsewhere"
    return f"{text}; check the disk, then retry"


def environment_message(exc: OSError) -> str:
    """An OSError from the machine (full disk, no permission...) as one line: cause and fix."""
    where = f"{exc.filename}: " if exc.filename else ""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        fix = "the disk is full: free some space (or point --db / $SRT_HOME elsewhere) and retry"
    elif exc.errno == errno.EDQUOT:
        fix = "your disk quota is used up: free some space and retry"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = (
            "no permission to write there: fix its permissions, or point $SRT_HOME (or --db, "
            "--out) at a folder you can write"
        )
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST):
        fix = "a file stands where a folder is needed: move it, or point $SRT_HOME (or --db) elsewhere"
    else:
        fix = "check the path and the disk, then retry"
    return f"{where}{reason}; {fix}"


class SrtGroup(click.Group):
    """The `srt` group. The one place where an SrtError from any command becomes a message."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SrtError as exc:
            raise ReportedError(str(exc)) from None
        except BrokenPipeError:
            # The reader of our stdout went away (`srt sql ... | head`): nothing left to say.
            raise SystemExit(EXIT_FAILED) from None
        except OSError as exc:
            # The machine said no (disk full, read-only folder...): a cause and a fix, not a trace.
            raise ReportedError(environment_message(exc)) from None
        except duckdb.IOException as exc:
            # DuckDB's own writes hit the same walls (a full disk while committing).
            raise ReportedError(
                f"the store could not be read or written: {io_message(exc)}"
            ) from None


db_option = click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The store (a DuckDB file). Default: srt.duckdb in the data dir ($SRT_HOME moves it).",
)

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the result as JSON on stdout."
)


def open_for_reading(db_path: Path | None, sandboxed: bool = False, tries: int = 3) -> Store:
    """The store opened read-only; while another process holds it (a run, the TUI), a snapshot
    taken now, said so on stderr. A copy taken mid-commit is taken again (up to `tries`)."""
    try:
        return Store.open(db_path, read_only=True, sandboxed=sandboxed)
    except StoreBusyError:
        pass
    for attempt in range(tries):
        try:
            store = Store.open_snapshot(db_path)
        except StoreError:
            if attempt == tries - 1:
                raise
            continue
        say(
            f"note: {db_path or 'the store'} is held by another process (a run or the TUI); "
            "showing a snapshot taken now",
            "dim",
        )
        return store
    raise AssertionError("unreachable")


def run_cli(group: click.Group) -> int:
    """Run the click group; SrtGroup has already turned SrtErrors into ClickExceptions."""
    try:
        group.main(standalone_mode=False)
    except click.exceptions.Abort:
        say("interrupted", "yellow")
        return 130
    except click.UsageError as exc:
        # One line, as every other error: what was wrong, and where the help is.
        ctx = exc.ctx
        where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        # click lists a missing option's choices one per line: one line here, as every error.
        report_error(" ".join(f"{exc.format_message()}{where}".split()))
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        say("interrupted: what was stored is kept; run again to resume", "yellow")
        return 130
    except SystemExit as exc:
        code: Any = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
