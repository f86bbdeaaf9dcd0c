"""Open a teacher by name; `auto` takes the Ollama teacher if it can serve, else the embedded."""

from __future__ import annotations

from collections.abc import Callable

from srt_local.config import ModelsConfig, TeacherSpec
from srt_local.model_status import teacher_status
from srt_local.teachers.base import Teacher, TeacherError
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
    embedded teacher; `log` gets one line saying which was chosen and why (and a pool's hosts
    that are left out). `concurrency` overrides the teacher's own (a pool's: over all hosts).
    Raises TeacherError (server, model) or ConfigError/ModelFileError (configuration, files).
    """
    say = log or (lambda _line: None)
    if name != "auto":
        return _limit(await _open(config.teacher(name), concurrency, say), config)
    ollama_spec = config.teacher(config.defaults.ollama_teacher)
    embedded_spec = config.teacher(config.defaults.embedded_teacher)
    reason = await probe_ollama(ollama_spec)
    if reason is None:
        where = ", ".join(h.url for h in ollama_spec.hosts) or ollama_spec.resolved_host
        say(f"teacher: {ollama_spec.name} ({ollama_spec.model} on Ollama at {where})")
        return _limit(await _open(ollama_spec, concurrency, say), config)
    say(f"teacher: {embedded_spec.name} (embedded), because {reason}")
    return _limit(await _open(embedded_spec, concurrency, say), config)


async def probe_ollama(spec: TeacherSpec, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None if the Ollama teacher can serve now, else why not (in words)."""
    if backend(spec.backend).source != "server":
        return f"{spec.name!r} is not an Ollama teacher (backend {spec.backend})"
    status = await teacher_status(spec, timeout)  # a pool: when any of its hosts can serve
    return None if status.usable else status.detail


async def _open(spec: TeacherSpec, concurrency: int | None, log: Callable[[str], None]) -> Teacher:
    if spec.hosts:
        return await open_pool(spec, concurrency, log)
    return await backend(spec.backend).open(spec, concurrency, log)


def _limit(teacher: Teacher, config: ModelsConfig) -> Teacher:
    """`teacher` held to the configured reply size (teachers without the limit are left alone);
    a pool passes it to each host's teacher."""
    for one in [teacher, *getattr(teacher, "members", [])]:
        if hasattr(one, "reply_chars"):
            setattr(one, "reply_chars", config.limits.reply_chars)  # noqa: B010
    return teacher


async def open_pool(
    spec: TeacherSpec, concurrency: int | None, log: Callable[[str], None] | None = None
) -> Teacher:
    """A teacher over every server in `spec.hosts` (see teachers/pool.py)."""
    from srt_local.config import HostSpec
    from srt_local.teachers.chat import ChatTeacher
    from srt_local.teachers.pool import TeacherPool, member_spec

    if spec.backend == "ollama":
        from srt_local.teachers.ollama import OllamaTeacher, default_concurrency

        default = default_concurrency()

        async def opener(host: HostSpec, n: int) -> ChatTeacher:
            return await OllamaTeacher.open(member_spec(spec, host), concurrency=n)

    elif spec.backend == "openai":
        from srt_local.teachers.openai_compat import DEFAULT_CONCURRENCY, OpenAICompatTeacher

        default = DEFAULT_CONCURRENCY

        async def opener(host: HostSpec, n: int) -> ChatTeacher:
            return await OpenAICompatTeacher.open(member_spec(spec, host), concurrency=n)

    else:
        raise TeacherError(f"teacher {spec.name!r}: backend {spec.backend} cannot pool hosts")
    return await TeacherPool.open(spec, opener, default, concurrency=concurrency, log=log)
