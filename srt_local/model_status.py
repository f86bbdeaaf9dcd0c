"""The status of every model of models.toml, computed here once for `srt models`, the TUI's Models
tab and the teacher `auto` picks: is a student's or teacher's GGUF here (and readable), is a served
teacher's server up with the model pulled. Front ends only lay the rows out.

Files are checked at once (no model is loaded); servers only when asked (check_servers), since
that waits on the network.
"""

from __future__ import annotations

import asyncio
import struct
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from srt_local import paths
from srt_local.config import ModelsConfig, StudentSpec, TeacherSpec
from srt_local.model_files import (
    GGUFInfo,
    ModelFileError,
    install_hint,
    read_gguf_info,
    resolve_gguf,
)
from srt_local.teachers.registry import ServerCheck, backend

STUDENT = "student"
TEACHER = "teacher"

# States: a GGUF-backed model...
PRESENT = "GGUF present"
MISSING = "missing"
UNREADABLE = "unreadable"
# ...a served one before its server was asked (then a ServerCheck state: pulled, not pulled...).
UNCHECKED = "unchecked"
PULLED = "pulled"


@dataclass(frozen=True)
class ModelStatus:
    """One model of models.toml and what is known of it."""

    role: str  # STUDENT or TEACHER
    spec: StudentSpec | TeacherSpec
    name: str
    defaults: tuple[str, ...]  # the defaults that name it: "student", "teacher", "auto: ollama"...
    backend: str  # the backend's name in models.toml (students: llamacpp)
    label: str  # the backend as tables show it
    source: str  # "pip <package>", the GGUF's file name, or the served model's name
    state: str
    detail: str  # one line: where the model is, or what is wrong and what to do
    problem: str | None = None  # what is wrong, without the fix
    file: Path | None = None
    size_bytes: int | None = None
    gguf: GGUFInfo | None = None  # the GGUF header, when read
    host: str | None = None
    gpu_layers: int | None = None  # configured n_gpu_layers; None for a served model
    check: ServerCheck | None = None  # a served model's answer from its server, once asked

    @property
    def served(self) -> bool:
        return self.host is not None

    @property
    def usable(self) -> bool:
        return self.state in (PRESENT, PULLED)


def model_statuses(config: ModelsConfig, read_headers: bool = False) -> list[ModelStatus]:
    """Every student, then every teacher; files checked (with `read_headers`, their GGUF header
    too), servers not yet asked."""
    d = config.defaults
    rows = [
        _gguf_status(STUDENT, s, ("student",) if s.name == d.student else (), read_headers)
        for s in config.students.values()
    ]
    for t in config.teachers.values():
        marks = tuple(
            mark
            for mark, name in (
                ("teacher", d.teacher),
                ("auto: ollama", d.ollama_teacher),
                ("auto: embedded", d.embedded_teacher),
            )
            if name == t.name
        )
        if backend(t.backend).source == "server":
            rows.append(_served_status(t, marks))
        else:
            rows.append(_gguf_status(TEACHER, t, marks, read_headers))
    return rows


async def check_servers(rows: list[ModelStatus], timeout: float) -> list[ModelStatus]:
    """The rows with every served teacher's server asked, all at once."""
    return list(await asyncio.gather(*(_checked(row, timeout) for row in rows)))


async def teacher_status(spec: TeacherSpec, timeout: float) -> ModelStatus:
    """One teacher's status, its server asked if it has one."""
    if backend(spec.backend).source != "server":
        return _gguf_status(TEACHER, spec, (), read_headers=False)
    return await _checked(_served_status(spec, ()), timeout)


async def _checked(row: ModelStatus, timeout: float) -> ModelStatus:
    if not row.served or not isinstance(row.spec, TeacherSpec):
        return row
    check = await _check(row.spec, timeout)
    return replace(
        row,
        state=check.state,
        detail=check.detail,
        problem=None if check.ready else check.detail,
        check=check,
    )


async def _check(spec: TeacherSpec, timeout: float) -> ServerCheck:
    """The server's answer; a pool's first usable host's, else every host's reasons."""
    check_server = backend(spec.backend).check_server
    if not spec.hosts:
        return await check_server(spec, timeout)
    checks = await asyncio.gather(*(check_server(spec.member(h), timeout) for h in spec.hosts))
    usable = [c for c in checks if c.ready]
    if usable:
        return replace(
            usable[0], detail=f"{len(usable)} of {len(checks)} hosts: {usable[0].detail}"
        )
    return replace(checks[0], detail="; ".join(c.detail for c in checks))


def _served_status(t: TeacherSpec, defaults: tuple[str, ...]) -> ModelStatus:
    return ModelStatus(
        role=TEACHER,
        spec=t,
        name=t.name,
        defaults=defaults,
        backend=t.backend,
        label=backend(t.backend).label,
        source=t.model or "?",
        state=UNCHECKED,
        detail=f"{t.name}: {t.model} at {served_at(t)}",
        host=served_at(t),
    )


def served_at(t: TeacherSpec) -> str:
    """Where a served teacher's model is asked for: its pool's hosts, its base URL or host."""
    if t.hosts:
        return ", ".join(h.url for h in t.hosts)
    return t.base_url or t.resolved_host


def _gguf_status(
    role: str, spec: StudentSpec | TeacherSpec, defaults: tuple[str, ...], read_headers: bool
) -> ModelStatus:
    package, path = spec.package, spec.path
    name = backend(spec.backend if isinstance(spec, TeacherSpec) else "llamacpp")
    base = ModelStatus(
        role=role,
        spec=spec,
        name=spec.name,
        defaults=defaults,
        backend=name.name,
        label=name.label,
        source=f"pip {package}" if package else (path.name if path else "?"),
        state=MISSING,
        detail="",
        gpu_layers=spec.n_gpu_layers,
    )
    try:
        file = resolve_gguf(path, package)
    except ModelFileError as exc:
        fix = f"; {install_hint(package)}" if package else ""
        return replace(base, detail=f"{exc}{fix}", problem=str(exc))
    try:
        size = file.stat().st_size
        info = read_gguf_info(file) if read_headers else None
    except (OSError, ModelFileError, struct.error, UnicodeDecodeError, ValueError) as exc:
        problem = f"{file}: cannot read the GGUF header ({exc or type(exc).__name__})"
        return replace(base, state=UNREADABLE, file=file, detail=problem, problem=problem)
    return replace(
        base,
        state=PRESENT,
        file=file,
        size_bytes=size,
        gguf=info,
        detail=f"{spec.name}: {short_path(file)}",
    )


def short_path(path: Path) -> str:
    """A path with the data dir, the Python environment or the home dir abbreviated."""
    for root, mark in (
        (paths.data_dir(), "<data dir>"),
        (Path(sys.prefix), "<python env>"),
        (Path.home(), "~"),
    ):
        try:
            return str(Path(mark) / path.resolve().relative_to(root.resolve()))
        except ValueError:
            continue
    return str(path)


def gpu_offload_supported() -> bool:
    """Whether this llama.cpp build can put layers on a GPU (CUDA, Metal, Vulkan...)."""
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())
