"""`srt models`: every student and teacher, whether its file or server is there, and its size.

Ollama servers are asked, with a short timeout, whether they answer and what they know of each
teacher's model: pulled, trained context, capabilities (thinking, tools) and digest.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from srt_local import paths
from srt_local.commands.common import cell, echo_json, json_option, out_console
from srt_local.config import StudentSpec, load_models
from srt_local.model_status import ModelStatus, check_servers, model_statuses
from srt_local.ollama_probe import PROBE_TIMEOUT

# Below this many columns the table's eight columns fold their words: one block per model instead.
WIDE_TABLE = 140


def _columns(row: ModelStatus) -> tuple[Text, Text, str, str, str]:
    """(resolves, source, size, vocab, context) as this table shows them."""
    if row.served:
        style = "green" if row.usable else "red"
        check = row.check
        size = f"{check.size_bytes / 1e9:.1f} GB" if check and check.size_bytes else ""
        ctx = f"{check.context_length:,}" if check and check.context_length else ""
        return Text(row.state, style=style), cell(f"{row.source} @ {row.host}"), size, "", ctx
    if row.file is None or row.problem is not None:
        return Text("no", style="red"), cell(row.problem or ""), "", "", ""
    info = row.gguf
    size = f"{(row.size_bytes or 0) / 1e6:.0f} MB"
    vocab = f"{info.vocab_size:,}" if info and info.vocab_size else "?"
    ctx = f"{info.context_length:,}" if info and info.context_length else "?"
    return Text("yes", style="green"), cell(row.file), size, vocab, ctx


def _settings(row: ModelStatus) -> tuple[str, str]:
    """(the name as shown, its settings in one line)."""
    spec = row.spec
    if isinstance(spec, StudentSpec):
        name = spec.name + (" (default)" if "student" in row.defaults else "")
        return name, (
            f"template={spec.template} max_tokens={spec.max_tokens} gpu_layers={spec.n_gpu_layers}"
        )
    settings = f"backend={spec.backend} output={spec.output} num_ctx={spec.options.num_ctx}"
    if row.served:
        settings += f" think={str(spec.think).lower()}" + _server_facts(row)
    return spec.name, settings


def _as_dict(row: ModelStatus) -> dict[str, object]:
    info = row.gguf
    check = row.check
    return {
        "role": row.role,
        "name": row.name,
        "defaults": list(row.defaults),
        "backend": row.backend,
        "state": row.state,
        "usable": row.usable,
        "source": row.source,
        "host": row.host,
        "file": str(row.file) if row.file else None,
        "problem": row.problem,
        "detail": row.detail,
        "size_bytes": row.size_bytes or (check.size_bytes if check else None),
        "vocab_size": info.vocab_size if info else None,
        "context_length": (info.context_length if info else None)
        or (check.context_length if check else None),
        "settings": _settings(row)[1],
    }


@click.command()
@click.option(
    "--models-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An extra models.toml read after the shipped and user files.",
)
@json_option
def models(models_file: Path | None, as_json: bool) -> None:
    """List every student and teacher, whether it resolves, its size, vocabulary and context;
    Ollama servers are asked (3 s at most) whether they answer and have the model."""
    config = load_models(models_file)
    rows = asyncio.run(check_servers(model_statuses(config, read_headers=True), PROBE_TIMEOUT))
    if as_json:
        echo_json(
            {
                "models": [_as_dict(row) for row in rows],
                "config_files": [str(f) for f in config.files],
                "user_models_toml": str(paths.user_models_toml()),
                "default_teacher": config.defaults.teacher,
                "default_student": config.defaults.student,
            }
        )
        return
    console = out_console
    if console.width >= WIDE_TABLE:
        table = Table(title="Models", title_justify="left")
        for column in ("role", "name", "resolves", "source", "size", "vocab", "context"):
            table.add_column(column, overflow="fold")
        table.add_column("settings", overflow="fold")
        for row in rows:
            ok, source, size, vocab, ctx = _columns(row)
            name, settings = _settings(row)
            table.add_row(row.role, cell(name), ok, source, size, vocab, ctx, cell(settings))
        console.print(table)
    else:
        # Eight columns do not fit a narrow terminal (or a pipe's 80): a few lines per model.
        for row in rows:
            ok, source, size, vocab, ctx = _columns(row)
            name, settings = _settings(row)
            facts = " · ".join(
                f"{label} {value}"
                for label, value in (("size", size), ("vocab", vocab), ("context", ctx))
                if value
            )
            console.print(Text.assemble(f"{row.role} ", (cell(name)), ": resolves ", ok))
            for value in (source, cell(facts), cell(settings)):
                if value.plain:
                    console.print(Text("  ") + value, soft_wrap=True)
    servers = {row.check.server for row in rows if row.check and row.check.server}
    for line in sorted(servers):
        console.print(cell(line))
    for row in rows:
        if row.served and not row.usable:
            console.print(cell(row.detail), style="red")
    files = ", ".join(str(f) for f in config.files)
    console.print(cell(f"config read from: {files}\nyour models.toml: {paths.user_models_toml()}"))
    console.print(
        cell(
            f"default teacher: {config.defaults.teacher} "
            f"(auto tries {config.defaults.ollama_teacher!r}, "
            f"then {config.defaults.embedded_teacher!r})"
        )
    )


def _server_facts(row: ModelStatus) -> str:
    """The capabilities and digest the server gave, as settings-column words."""
    check = row.check
    if check is None or not check.ready:
        return ""
    caps = [c for c in check.capabilities or () if c != "completion"]
    words = " caps=" + (",".join(caps) if caps else ("?" if check.capabilities is None else "-"))
    if check.digest:
        words += f" digest={check.digest.removeprefix('sha256:')[:12]}"
    return words
