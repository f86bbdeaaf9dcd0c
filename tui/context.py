"""What a pane gets from the app, in its constructor: panes never reach for the app itself.

The app builds one `PaneContext` and hands it to every tab. Tests build their own, which is how the
Models tab is shown on fixed machine facts (a snapshot must not depend on the GPU, the network or
the size of an installed model package).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from srt_local.config import ModelsConfig, TeacherSpec
from srt_local.store import Store

OLLAMA_TIMEOUT_S = 2.0


class Machine(Protocol):
    """The facts about this machine that the Models tab shows."""

    def gguf_file(self, path: Path | None, package: str | None) -> tuple[Path, int]:
        """The model file and its size in bytes; ModelFileError when it is not there."""
        ...

    def gpu_offload(self) -> bool:
        """Whether this llama.cpp build can put layers on a GPU."""
        ...

    async def ollama_status(self, teacher: TeacherSpec) -> tuple[str, str]:
        """(status, detail) of an Ollama teacher: server reachable? model pulled?"""
        ...


class LocalMachine:
    """The real machine: files on disk, the installed llama.cpp, the Ollama servers."""

    def gguf_file(self, path: Path | None, package: str | None) -> tuple[Path, int]:
        from srt_local.model_files import resolve_gguf

        file = resolve_gguf(path, package)
        return file, file.stat().st_size

    def gpu_offload(self) -> bool:
        # Imported here: loading llama.cpp's library costs a good part of a second.
        import llama_cpp

        return bool(llama_cpp.llama_supports_gpu_offload())

    async def ollama_status(self, teacher: TeacherSpec) -> tuple[str, str]:
        import httpx
        from ollama import AsyncClient, ResponseError

        from srt_local.teachers.ollama import not_pulled_message, unreachable_message

        host = teacher.resolved_host
        client = AsyncClient(host=host, timeout=OLLAMA_TIMEOUT_S)
        try:
            listing = await client.list()
        except (ConnectionError, httpx.HTTPError, ResponseError, OSError):
            return "unreachable", unreachable_message(host)
        names = {m.model for m in listing.models if m.model}
        wanted = teacher.model or ""
        if names & {wanted, wanted if ":" in wanted else f"{wanted}:latest"}:
            return "pulled", f"{teacher.name}: {wanted} is pulled on the Ollama server at {host}"
        return "not pulled", not_pulled_message(host, wanted)


@dataclass(frozen=True)
class PaneContext:
    """The store every tab shares, how to read models.toml, and the machine's facts."""

    store: Store
    load_models: Callable[[], ModelsConfig]
    """models.toml as it is now (re-read on each call, so edits apply without a restart)."""
    machine: Machine = field(default_factory=LocalMachine)
