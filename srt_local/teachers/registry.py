"""Teacher backends by name. Adding one (vLLM, an OpenAI-compatible server) is one module, a
ChatTeacher subclass with the functions below, and one entry in BACKENDS.

A backend module provides:
  `async def open_backend(spec, concurrency, log) -> Teacher`   a teacher ready to reflect
  `async def check_server(spec, timeout) -> ServerCheck`   (server backends) can it serve now?

Nothing heavy is imported here (config reads the names at import time): a backend's module, and
its HTTP or llama.cpp dependencies, are imported when a teacher of that backend is opened or checked.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from srt_local.config import TeacherSpec
    from srt_local.teachers.base import Teacher


@dataclass(frozen=True)
class ServerCheck:
    """Whether a served model can be used now; `state` names it in a word, `detail` in a line."""

    ready: bool
    state: str  # pulled, not pulled, unreachable, error
    detail: str
    # What the server says of the model and of itself, where it says it.
    context_length: int | None = None  # the trained context
    capabilities: tuple[str, ...] | None = None  # None: the server did not say
    digest: str | None = None
    size_bytes: int | None = None
    server: str | None = None  # one line on the server: version, models pulled, warnings


@dataclass(frozen=True)
class Backend:
    """A kind of teacher. `source` says what models.toml gives it: "server" a `model` served at
    `host`; "file" a GGUF by `path` or `package`."""

    name: str
    label: str  # how status tables name it
    source: Literal["server", "file"]
    module: str

    async def open(
        self, spec: TeacherSpec, concurrency: int | None, log: Callable[[str], None] | None = None
    ) -> Teacher:
        teacher: Teacher = await importlib.import_module(self.module).open_backend(
            spec, concurrency, log
        )
        return teacher

    async def check_server(self, spec: TeacherSpec, timeout: float) -> ServerCheck:
        """Ask the server (server backends only) whether it can serve the teacher now."""
        if self.source != "server":
            raise ValueError(f"backend {self.name} has no server to check")
        check: ServerCheck = await importlib.import_module(self.module).check_server(spec, timeout)
        return check


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("ollama", "ollama", "server", "srt_local.teachers.ollama"),
        Backend("llamacpp", "llama.cpp", "file", "srt_local.teachers.llamacpp"),
        Backend("openai", "openai", "server", "srt_local.teachers.openai_compat"),
    )
}


def backend(name: str) -> Backend:
    """The backend called `name` (config has checked that it exists)."""
    return BACKENDS[name]
