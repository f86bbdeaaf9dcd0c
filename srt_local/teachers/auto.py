"""Open a teacher by name; `auto` takes the Ollama teacher if it can serve, else the embedded."""

from __future__ import annotations

from collections.abc import Callable

from srt_local.config import ModelsConfig, TeacherSpec
from srt_local.model_status import teacher_status
from srt_local.teachers.base import Teacher
from srt_local.teachers.registry import backend

# How long `auto` waits for an Ollama server before settling for the embedded teacher.
PROBE_TIMEOUT = 3.0


async def open_teacher(
    name: str,
    config: ModelsConfig,
    log: Callable[[str], None] | None = None,
    *,
    concurrency: int | None = None,
) -> Teacher:
    """The teacher called `name` in models.toml, ready to reflect.

    `auto`: the configured Ollama teacher if its server answers and has the model, else the
    embedded teacher; `log` gets one line saying which was chosen and why (and the server's
    warnings, if any). `concurrency` overrides the teacher's own (the embedded teacher always
    runs one call at a time).
    Raises TeacherError (server, model) or ConfigError/ModelFileError (configuration, files).
    """
    say = log or (lambda _line: None)
    if name != "auto":
        return _limit(await _open(config.teacher(name), concurrency, say), config)
    ollama_spec = config.teacher(config.defaults.ollama_teacher)
    embedded_spec = config.teacher(config.defaults.embedded_teacher)
    reason = await probe_ollama(ollama_spec)
    if reason is None:
        say(
            f"teacher: {ollama_spec.name} ({ollama_spec.model} on Ollama at "
            f"{ollama_spec.resolved_host})"
        )
        return _limit(await _open(ollama_spec, concurrency, say), config)
    say(f"teacher: {embedded_spec.name} (embedded), because {reason}")
    return _limit(await _open(embedded_spec, concurrency, say), config)


async def probe_ollama(spec: TeacherSpec, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None if the Ollama teacher can serve now, else why not (in words)."""
    if backend(spec.backend).source != "server":
        return f"{spec.name!r} is not an Ollama teacher (backend {spec.backend})"
    status = await teacher_status(spec, timeout)
    return None if status.usable else status.detail


async def _open(spec: TeacherSpec, concurrency: int | None, log: Callable[[str], None]) -> Teacher:
    return await backend(spec.backend).open(spec, concurrency, log)


def _limit(teacher: Teacher, config: ModelsConfig) -> Teacher:
    """`teacher` held to the configured reply size (teachers without the limit are left alone)."""
    if hasattr(teacher, "reply_chars"):
        setattr(teacher, "reply_chars", config.limits.reply_chars)  # noqa: B010
    return teacher
