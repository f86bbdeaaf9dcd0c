"""`srt prompts`: list the teacher's prompt sets, show one, copy one to edit."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from srt_local.prompts import copy_prompt_set, list_prompt_sets, load_prompt_set, user_sets_dir


@click.group(invoke_without_command=True)
@click.pass_context
def prompts(ctx: click.Context) -> None:
    """The teacher's prompt sets: instruction reflection, response reflection and merge.

    A set is one TOML file with named placeholders ({instruction}, {input}, {output},
    {input_block}, {format}). `srt prompts copy srt NEW` puts an editable copy in your config
    folder; pick it per teacher in models.toml (`prompts = "NEW"`) or per run
    (`srt run --prompts NEW`). A set's content hash is part of the teacher's key, so replies made
    with different prompts are never mixed.
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_)


@prompts.command("list")
def list_() -> None:
    """Every prompt set: name, where it lives, its content hash."""
    table = Table(title="Prompt sets", title_justify="left")
    for column in ("name", "hash", "where", "description"):
        table.add_column(column)
    for s in list_prompt_sets():
        where = Text(str(s.path)) if s.user_copy else Text("shipped", style="dim")
        table.add_row(Text(s.name), s.digest, where, Text(s.description))
    Console().print(table)
    click.echo(f"your sets: {user_sets_dir()}", err=True)


@prompts.command()
@click.argument("name")
def show(name: str) -> None:
    """Print set NAME's file as it is (the text sent, with its placeholders)."""
    chosen = load_prompt_set(name)
    click.echo(chosen.path.read_text(encoding="utf-8"), nl=False)


@prompts.command()
@click.argument("name")
@click.argument("new", required=False)
def copy(name: str, new: str | None) -> None:
    """Copy set NAME into your config folder as NEW (default: the same name) to edit it."""
    target = copy_prompt_set(name, new)
    click.echo(str(target))
