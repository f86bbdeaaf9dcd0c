"""`srt models`: every student and teacher, whether its file or server is there, and its size."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from srt_local import paths
from srt_local.config import StudentSpec, load_models
from srt_local.model_status import ModelStatus, model_statuses


def _columns(row: ModelStatus) -> tuple[Text, Text, str, str, str]:
    """(resolves, source, size, vocab, context) as this table shows them."""
    if row.served:
        return Text("(server)"), Text(f"{row.source} @ {row.host}"), "", "", ""
    if row.file is None or row.problem is not None:
        return Text("no", style="red"), Text(row.problem or ""), "", "", ""
    info = row.gguf
    size = f"{(row.size_bytes or 0) / 1e6:.0f} MB"
    vocab = f"{info.vocab_size:,}" if info and info.vocab_size else "?"
    ctx = f"{info.context_length:,}" if info and info.context_length else "?"
    return Text("yes", style="green"), Text(str(row.file)), size, vocab, ctx


@click.command()
@click.option(
    "--models-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An extra models.toml read after the shipped and user files.",
)
def models(models_file: Path | None) -> None:
    """List every student and teacher, whether it resolves, its size, vocabulary and context."""
    config = load_models(models_file)
    console = Console()
    table = Table(title="Models", title_justify="left")
    for column in ("role", "name", "resolves", "source", "size", "vocab", "context", "settings"):
        table.add_column(column, overflow="fold")
    for row in model_statuses(config, read_headers=True):
        ok, source, size, vocab, ctx = _columns(row)
        spec = row.spec
        if isinstance(spec, StudentSpec):
            name = spec.name + (" (default)" if "student" in row.defaults else "")
            settings = (
                f"template={spec.template} max_tokens={spec.max_tokens} "
                f"gpu_layers={spec.n_gpu_layers}"
            )
        else:
            name = spec.name
            settings = f"backend={spec.backend} output={spec.output} num_ctx={spec.options.num_ctx}"
        table.add_row(row.role, Text(name), ok, source, size, vocab, ctx, Text(settings))
    console.print(table)
    files = ", ".join(str(f) for f in config.files)
    console.print(f"config read from: {files}\nyour models.toml: {paths.user_models_toml()}")
    console.print(
        f"default teacher: {config.defaults.teacher} "
        f"(auto tries {config.defaults.ollama_teacher!r}, "
        f"then {config.defaults.embedded_teacher!r})"
    )
