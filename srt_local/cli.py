"""The `srt` command. Each subcommand lives in srt_local/commands/; `srt` alone opens the TUI."""

from __future__ import annotations

import importlib
import os
import sys

import click

from srt_local import __version__
from srt_local.commands.common import SrtGroup, run_cli

# Each command's module is imported only when that command runs (or `srt --help` lists them):
# importing all of them cost every `srt` call about 0.2 s of start-up.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("srt_local.commands.demo", "demo"),
    "export": ("srt_local.commands.export_cmd", "export"),
    "import": ("srt_local.commands.import_cmd", "import_"),
    "judge": ("srt_local.commands.judge_cmd", "judge"),
    "models": ("srt_local.commands.models", "models"),
    "prompts": ("srt_local.commands.prompts_cmd", "prompts"),
    "reflect": ("srt_local.commands.reflect", "reflect"),
    "report": ("srt_local.commands.report_cmd", "report"),
    "run": ("srt_local.commands.run_cmd", "run"),
    "score": ("srt_local.commands.score", "score"),
    "sql": ("srt_local.commands.sql_cmd", "sql"),
    "status": ("srt_local.commands.run_cmd", "status"),
    "tui": ("srt_local.commands.tui_cmd", "tui"),
}


class LazyGroup(SrtGroup):
    """The `srt` group, loading a subcommand's module when it is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(
    cls=LazyGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="srt")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """srt-local: Selective Reflection-Tuning on your own machine.

    A teacher (Ollama, or an embedded llama.cpp model) rewrites instruction pairs; a small student
    (a GGUF run by llama.cpp) keeps the rewrites it can learn from, by IFD and r-IFD; everything
    lands in one DuckDB file you can query with `srt sql`.

    Start with `srt demo`, or `srt` alone for the terminal UI.
    """
    if ctx.invoked_subcommand is None:
        tui = cli.get_command(ctx, "tui")
        ctx.invoke(tui) if tui is not None else click.echo(ctx.get_help())


def main() -> None:
    # llama.cpp's OpenMP threads spin while waiting; the student and the embedded teacher share the
    # cores, and spinning steals seconds per call. Must be set before llama.cpp loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.exit(run_cli(cli))


if __name__ == "__main__":
    main()
