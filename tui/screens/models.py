"""Models: every student and teacher of models.toml with its live status.

GGUF files are checked and llama.cpp asked about GPU offload in a thread worker; Ollama servers
are asked, with a short timeout, in an async worker. The table shows what is known, then the rest.
The machine's facts come from the pane's context (`ctx.machine`), so tests can fix them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import pyarrow as pa
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType

from srt_local.config import ConfigError
from srt_local.model_status import UNCHECKED, ModelStatus
from tui.screens.base import Pane
from tui.widgets.arrow_table import ArrowTable
from tui.widgets.status_line import StatusLine

if TYPE_CHECKING:
    from textual_fastdatatable import DataTable


@dataclass(frozen=True)
class ModelRow:
    """One line of the table; `detail` is shown below it when highlighted."""

    role: str
    name: str
    default: str
    backend: str
    source: str
    status: str
    size: str
    gpu: str
    detail: str

    @staticmethod
    def table(rows: list[ModelRow]) -> pa.Table:
        names = ("name", "role", "status", "gpu", "size", "backend", "source", "default")
        return pa.table({n: pa.array([getattr(r, n) for r in rows], pa.string()) for n in names})


def model_row(status: ModelStatus, gpu_offload: bool | None) -> ModelRow:
    """A status as this table shows it; the GPU column from llama.cpp's build and the config."""
    if status.served:
        gpu = "server"
    elif gpu_offload is None:
        gpu = "…"
    elif status.gpu_layers == 0:
        gpu = "off"
    elif gpu_offload:
        layers = status.gpu_layers if status.gpu_layers is not None else -1
        gpu = "all layers" if layers < 0 else f"{layers} layers"
    else:
        gpu = "none (CPU build)"
    return ModelRow(
        status.role,
        status.name,
        ", ".join(status.defaults),
        status.label,
        status.source,
        "checking…" if status.state == UNCHECKED else status.state,
        "" if status.size_bytes is None else f"{status.size_bytes / 1e6:,.0f} MB",
        gpu,
        status.detail,
    )


class ModelsPane(Pane):
    """The models table and, under it, the highlighted model's file, server or fix."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("r", "reload", "Check again")]

    def compose(self) -> ComposeResult:
        yield ArrowTable("reading models.toml…", id="models-table")
        yield StatusLine(id="model-detail")

    def on_mount(self) -> None:
        self.rows: list[ModelRow] = []
        self.gpu_offload: bool | None = None

    def activated(self) -> None:
        if not self.rows:  # checked once; r checks again
            self.reload()

    def focus_main(self) -> None:
        self.query_one("#models-table", ArrowTable).focus_table()

    def action_reload(self) -> None:
        self.reload()

    def reload(self) -> None:
        self.check_files()

    @work(thread=True, group="models-files", exclusive=True, exit_on_error=False)
    def check_files(self) -> None:
        try:
            config = self.ctx.load_models()
        except ConfigError as exc:
            self.from_thread(self._config_error, str(exc))
            return
        machine = self.ctx.machine
        statuses = machine.statuses(config)
        self.from_thread(self._show, [model_row(s, self.gpu_offload) for s in statuses])
        if self.gpu_offload is None:
            self.gpu_offload = machine.gpu_offload()
            self.from_thread(self._show, [model_row(s, self.gpu_offload) for s in statuses])
        self.app.call_from_thread(self.check_servers, statuses)

    @work(group="models-servers", exclusive=True, exit_on_error=False)
    async def check_servers(self, statuses: list[ModelStatus]) -> None:
        checked = await self.ctx.machine.check_servers(statuses)
        await self._show([model_row(s, self.gpu_offload) for s in checked])

    async def _show(self, rows: list[ModelRow]) -> None:
        self.rows = rows
        table = self.query_one("#models-table", ArrowTable)
        cursor = table.table.cursor_row if table.table is not None else 0
        n_s = sum(r.role == "student" for r in rows)
        await table.show(
            ModelRow.table(rows),
            f"{n_s} students, {len(rows) - n_s} teachers "
            "(models.toml; `srt models` prints the files)",
            cursor_row=cursor,
        )
        self._detail(cursor)

    async def _config_error(self, message: str) -> None:
        await self.query_one("#models-table", ArrowTable).show(
            ModelRow.table([]), "models.toml cannot be used", empty=message
        )

    def _detail(self, row: int) -> None:
        text = self.rows[row].detail if 0 <= row < len(self.rows) else ""
        self.query_one("#model-detail", StatusLine).set(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail(event.cursor_row)
