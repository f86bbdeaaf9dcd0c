"""Models: every student and teacher of models.toml with its live status.

GGUF files are checked and llama.cpp asked about GPU offload in a thread worker; Ollama servers
are asked, with a short timeout, in an async worker. The table shows what is known, then the rest.
The machine's facts come from the pane's context (`ctx.machine`), so tests can fix them.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import pyarrow as pa
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType

from srt_local import paths
from srt_local.config import ConfigError, ModelsConfig, TeacherSpec
from srt_local.model_files import ModelFileError, install_hint
from tui.context import Machine
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


def gguf_row(
    machine: Machine,
    role: str,
    name: str,
    default: str,
    path: Path | None,
    package: str | None,
    gpu_layers: int,
    gpu_offload: bool | None,
) -> ModelRow:
    """A llama.cpp model: is its GGUF here, how big, and how many layers go to the GPU."""
    source = f"pip {package}" if package else (path.name if path else "?")
    if gpu_offload is None:
        gpu = "…"
    elif gpu_layers == 0:
        gpu = "off"
    elif gpu_offload:
        gpu = "all layers" if gpu_layers < 0 else f"{gpu_layers} layers"
    else:
        gpu = "none (CPU build)"
    try:
        file, n_bytes = machine.gguf_file(path, package)
    except ModelFileError as exc:
        fix = f"; {install_hint(package)}" if package else ""
        return ModelRow(role, name, default, "llama.cpp", source, "missing", "", gpu, f"{exc}{fix}")
    size = f"{n_bytes / 1e6:,.0f} MB"
    return ModelRow(
        role,
        name,
        default,
        "llama.cpp",
        source,
        "GGUF present",
        size,
        gpu,
        f"{name}: {short_path(file)}",
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


def ollama_row(t: TeacherSpec, default: str, status: str, detail: str) -> ModelRow:
    return ModelRow(
        "teacher", t.name, default, "ollama", t.model or "?", status, "", "server", detail
    )


def base_rows(machine: Machine, config: ModelsConfig, gpu_offload: bool | None) -> list[ModelRow]:
    """Every model; Ollama teachers not yet asked."""
    d = config.defaults
    rows: list[ModelRow] = []
    for s in config.students.values():
        default = "student" if s.name == d.student else ""
        rows.append(
            gguf_row(
                machine, "student", s.name, default, s.path, s.package, s.n_gpu_layers, gpu_offload
            )
        )
    for t in config.teachers.values():
        marks = [
            m
            for m, n in (
                ("teacher", d.teacher),
                ("auto: ollama", d.ollama_teacher),
                ("auto: embedded", d.embedded_teacher),
            )
            if n == t.name
        ]
        default = ", ".join(marks)
        if t.backend == "ollama":
            rows.append(
                ollama_row(t, default, "checking…", f"{t.name}: {t.model} at {t.resolved_host}")
            )
        else:
            rows.append(
                gguf_row(
                    machine,
                    "teacher",
                    t.name,
                    default,
                    t.path,
                    t.package,
                    t.n_gpu_layers,
                    gpu_offload,
                )
            )
    return rows


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
        self.from_thread(self._show, base_rows(machine, config, self.gpu_offload))
        if self.gpu_offload is None:
            self.gpu_offload = machine.gpu_offload()
            self.from_thread(self._show, base_rows(machine, config, self.gpu_offload))
        self.app.call_from_thread(self.check_servers, config)

    @work(group="models-servers", exclusive=True, exit_on_error=False)
    async def check_servers(self, config: ModelsConfig) -> None:
        teachers = [t for t in config.teachers.values() if t.backend == "ollama"]
        results = await asyncio.gather(*(self.ctx.machine.ollama_status(t) for t in teachers))
        found = {t.name: r for t, r in zip(teachers, results, strict=True)}
        rows = [
            replace(r, status=found[r.name][0], detail=found[r.name][1])
            if r.backend == "ollama" and r.name in found
            else r
            for r in self.rows
        ]
        await self._show(rows)

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
