"""What a pane gets from the app, in its constructor: panes never reach for the app itself.

The app builds one `PaneContext` and hands it to every tab. Tests build their own, which is how the
Models tab is shown on fixed machine facts (a snapshot must not depend on the GPU, the network or
the size of an installed model package).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from srt_local.config import ModelsConfig
from srt_local.model_status import ModelStatus
from srt_local.store import Store

OLLAMA_TIMEOUT_S = 2.0


class Machine(Protocol):
    """The facts about this machine that the Models tab shows (from `srt_local.model_status`)."""

    def statuses(self, config: ModelsConfig) -> list[ModelStatus]:
        """Every model of models.toml with its files checked; servers not yet asked."""
        ...

    def gpu_offload(self) -> bool:
        """Whether this llama.cpp build can put layers on a GPU."""
        ...

    async def check_servers(self, statuses: list[ModelStatus]) -> list[ModelStatus]:
        """The statuses with every served teacher's server asked."""
        ...


class LocalMachine:
    """The real machine: files on disk, the installed llama.cpp, the Ollama servers."""

    def statuses(self, config: ModelsConfig) -> list[ModelStatus]:
        from srt_local.model_status import model_statuses

        return model_statuses(config)

    def gpu_offload(self) -> bool:
        from srt_local.model_status import gpu_offload_supported

        return gpu_offload_supported()

    async def check_servers(self, statuses: list[ModelStatus]) -> list[ModelStatus]:
        from srt_local.model_status import check_servers

        return await check_servers(statuses, OLLAMA_TIMEOUT_S)


@dataclass(frozen=True)
class PaneContext:
    """The store every tab shares, how to read models.toml, and the machine's facts."""

    store: Store
    load_models: Callable[[], ModelsConfig]
    """models.toml as it is now (re-read on each call, so edits apply without a restart)."""
    machine: Machine = field(default_factory=LocalMachine)
