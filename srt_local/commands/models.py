"""`srt models`: every student and teacher, whether its file or server is there, and its size.

Ollama servers are asked, with a short timeout, whether they answer and what they know of each
teacher's model: pulled, trained context, capabilities (thinking, tools) and digest.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from srt_local import paths
from srt_local.config import TeacherSpec, load_models
from srt_local.model_files import ModelFileError, read_gguf_info, resolve_gguf
from srt_local.ollama_host import OllamaHostError
from srt_local.ollama_probe import PROBE_TIMEOUT, ServerProbe, probe_server


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
    probes = asyncio.run(
        _probe_servers([t for t in config.teachers.values() if t.backend == "ollama"])
    )
    for t in config.teachers.values():
        settings = f"backend={t.backend} output={t.output} num_ctx={t.options.num_ctx}"
        if t.backend == "ollama":
            ok, source, size, vocab, ctx, more = _describe_ollama(t, probes)
            settings += f" think={str(t.think).lower()}{more}"
        else:
            ok, source, size, vocab, ctx = _describe_gguf(t.path, t.package)
        table.add_row("teacher", t.name, ok, source, size, vocab, ctx, settings)
    console.print(table)
    for host, probe in probes.items():
        if isinstance(probe, str):
            console.print(f"[red]{probe}[/]", highlight=False)
        elif probe.error:
            console.print(f"[red]{probe.error}[/]", highlight=False)
        else:
            version = f"version {probe.version}" if probe.version else "version unknown"
            console.print(
                f"Ollama at {host}: {version}, {len(probe.names)} models pulled", highlight=False
            )
            for warning in probe.warnings:
                console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    files = ", ".join(str(f) for f in config.files)
    console.print(f"config read from: {files}\nyour models.toml: {paths.user_models_toml()}")
    console.print(
        f"default teacher: {config.defaults.teacher} "
        f"(auto tries {config.defaults.ollama_teacher!r}, "
        f"then {config.defaults.embedded_teacher!r})"
    )


async def _probe_servers(teachers: list[TeacherSpec]) -> dict[str, ServerProbe | str]:
    """Each Ollama server the teachers use, probed once for all its teachers' models (a string:
    why its host cannot be read)."""
    wanted: dict[str, list[str]] = {}
    result: dict[str, ServerProbe | str] = {}
    for t in teachers:
        try:
            host = t.resolved_host
        except OllamaHostError as exc:
            result[t.host or "OLLAMA_HOST"] = f"teacher {t.name!r}: {exc}"
            continue
        wanted.setdefault(host, [])
        if t.model and t.model not in wanted[host]:
            wanted[host].append(t.model)
    hosts = list(wanted)
    probes = await asyncio.gather(*(probe_server(h, wanted[h], PROBE_TIMEOUT) for h in hosts))
    result.update(zip(hosts, probes, strict=True))
    return result


def _describe_ollama(
    t: TeacherSpec, probes: dict[str, ServerProbe | str]
) -> tuple[str, str, str, str, str, str]:
    """(resolves, source, size, vocab, context, more settings) for an Ollama teacher."""
    try:
        host = t.resolved_host
    except OllamaHostError as exc:
        return "[red]bad host[/]", str(exc), "", "", "", ""
    source = f"{t.model} @ {host}"
    probe = probes.get(host)
    if not isinstance(probe, ServerProbe) or probe.error:
        return "[red]unreachable[/]", source, "", "", "", ""
    info = probe.models.get(t.model or "")
    if info is None or not info.pulled:
        return "[red]not pulled[/]", f"{source} (`ollama pull {t.model}`)", "", "", "", ""
    if info.name and info.name != t.model:
        source = f"{t.model} (as {info.name}) @ {host}"
    size = f"{info.size / 1e9:.1f} GB" if info.size else ""
    ctx = f"{info.context_length:,}" if info.context_length else "?"
    caps = [c for c in info.capabilities or () if c != "completion"]
    more = " caps=" + (",".join(caps) if caps else ("?" if info.capabilities is None else "-"))
    if info.digest:
        more += f" digest={info.digest.removeprefix('sha256:')[:12]}"
    return "[green]pulled[/]", source, size, "", ctx, more
