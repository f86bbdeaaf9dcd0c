"""`srt models`: every student and teacher, whether its file or server is there, and its size."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from srt_local import paths
from srt_local.config import load_models
from srt_local.model_files import ModelFileError, read_gguf_info, resolve_gguf


def _describe_gguf(path: Path | None, package: str | None) -> tuple[str, str, str, str, str]:
    """(resolves, file, size, vocab, context) for a GGUF-backed entry."""
    try:
        file = resolve_gguf(path, package)
    except ModelFileError as exc:
        return "[red]no[/]", str(exc), "", "", ""
    info = read_gguf_info(file)
    size = f"{file.stat().st_size / 1e6:.0f} MB"
    vocab = f"{info.vocab_size:,}" if info.vocab_size else "?"
    ctx = f"{info.context_length:,}" if info.context_length else "?"
    return "[green]yes[/]", str(file), size, vocab, ctx


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
    for spec in config.students.values():
        ok, file, size, vocab, ctx = _describe_gguf(spec.path, spec.package)
        default = " (default)" if spec.name == config.defaults.student else ""
        settings = (
            f"template={spec.template} max_tokens={spec.max_tokens} gpu_layers={spec.n_gpu_layers}"
        )
        table.add_row("student", spec.name + default, ok, file, size, vocab, ctx, settings)
    for t in config.teachers.values():
        if t.backend in ("ollama", "openai"):
            where = (
                ", ".join(h.url for h in t.hosts)
                or (t.base_url if t.backend == "openai" else t.resolved_host)
                or ""
            )
            ok, source, size, vocab, ctx = "(server)", f"{t.model} @ {where}", "", "", ""
        else:
            ok, source, size, vocab, ctx = _describe_gguf(t.path, t.package)
        settings = f"backend={t.backend} output={t.output} num_ctx={t.options.num_ctx}"
        table.add_row("teacher", t.name, ok, source, size, vocab, ctx, settings)
    console.print(table)
    files = ", ".join(str(f) for f in config.files)
    console.print(f"config read from: {files}\nyour models.toml: {paths.user_models_toml()}")
    console.print(
        f"default teacher: {config.defaults.teacher} "
        f"(auto tries {config.defaults.ollama_teacher!r}, "
        f"then {config.defaults.embedded_teacher!r})"
    )
