"""The `srt` command. Each subcommand lives in srt_local/commands/; `srt` alone opens the TUI."""

from __future__ import annotations

import os
import sys

import click

from srt_local import __version__
from srt_local.commands import demo, export_cmd, import_cmd, models, prompts_cmd, run_cmd, sql_cmd
from srt_local.commands.common import SrtGroup, run_cli
from srt_local.commands.judge_cmd import judge
from srt_local.commands.reflect import reflect
from srt_local.commands.report_cmd import report
from srt_local.commands.score import score
from srt_local.commands.tui_cmd import tui


@click.group(
    cls=SrtGroup,
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
        ctx.invoke(cli.commands["tui"]) if "tui" in cli.commands else click.echo(ctx.get_help())


cli.add_command(models.models)
cli.add_command(import_cmd.import_)
cli.add_command(export_cmd.export)
cli.add_command(run_cmd.run)
cli.add_command(run_cmd.status)
cli.add_command(sql_cmd.sql)
cli.add_command(demo.demo)
cli.add_command(tui)
cli.add_command(reflect)
cli.add_command(score)
cli.add_command(judge)
cli.add_command(report)
cli.add_command(prompts_cmd.prompts)


def main() -> None:
    # llama.cpp's OpenMP threads spin while waiting; the student and the embedded teacher share the
    # cores, and spinning steals seconds per call. Must be set before llama.cpp loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.exit(run_cli(cli))


if __name__ == "__main__":
    main()
