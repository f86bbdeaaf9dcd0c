"""Run: choose a dataset, a teacher (or auto) and a student; start, pause, cancel and resume runs.

The pipeline runs in one thread worker. It reports through `progress` and `log` callbacks, called
from that thread: they only post messages, which Textual coalesces (`can_replace`), so a fast
pipeline never floods the screen. Pause sets the pipeline's stop event: it finishes the work in
flight, stores it and returns with status 'paused'; the run resumes from here, even after a restart.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Input, RichLog, Select
from textual.worker import Worker, WorkerState

from srt_local.config import ConfigError, ModelsConfig
from srt_local.model_files import ModelFileError
from srt_local.pipeline import (
    PipelineError,
    RunOptions,
    RunProgress,
    RunSummary,
    StageProgress,
    cancel_run,
    prepare_run,
    run_pipeline,
)
from srt_local.run.vocabulary import RESUMABLE
from srt_local.run.vocabulary import RunStatus as Status
from srt_local.run_status import RunStatus, list_runs, run_status
from srt_local.store import StoreError
from srt_local.textsafe import visible
from tui.messages import RunChosen
from tui.screens.base import Pane
from tui.widgets.arrow_table import ArrowTable
from tui.widgets.confirm import Confirm
from tui.widgets.stage_bars import StageBars, failures_text
from tui.widgets.status_line import StatusLine

INTERRUPTED = "interrupted"  # how the table shows a run left `running` by a process that died


def resumable(shown: str) -> bool:
    """Whether a run shown with this status can be resumed from here (not the one running now)."""
    return shown == INTERRUPTED or (shown in RESUMABLE and shown != Status.RUNNING)


if TYPE_CHECKING:
    from textual_fastdatatable import DataTable

EXPECTED_ERRORS = (PipelineError, ConfigError, ModelFileError, StoreError)
LOG_LINES = 2000


# ---------------------------------------------------------------- messages from the run's thread


class RunStarted(Message):
    """The run has an id (new, or found for resuming) and the pipeline is starting."""

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id


class RunProgressed(Message):
    """The pipeline's latest counts; a newer one replaces an older one still in the queue."""

    def __init__(self, progress: RunProgress) -> None:
        super().__init__()
        self.progress = progress

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunProgressed)


class RunLogged(Message):
    """New lines wait in the pane's log buffer; one message drains however many there are."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunLogged)


class RunEnded(Message):
    """The pipeline returned (summary) or raised (error)."""

    def __init__(
        self, run_id: int | None, summary: RunSummary | None, error: BaseException | None
    ) -> None:
        super().__init__()
        self.run_id = run_id
        self.summary = summary
        self.error = error


# ---------------------------------------------------------------- text helpers


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds}s"


def progress_text(p: RunProgress) -> str:
    return (
        f"run {p.run_id} running · {p.tokens_per_s:,.0f} tokens/s · "
        f"{p.calls_per_s:.2f} calls/s · ETA {eta_text(p.eta_s)}"
    )


def waiting_text(run_id: int | None, in_flight: int) -> str:
    """What a pause waits for: the samples in flight, whose replies and scores are kept."""
    where = f"run {run_id}" if run_id is not None else "the run"
    if in_flight <= 0:
        return f"pausing {where}: storing the last results…"
    samples = "sample" if in_flight == 1 else "samples"
    return (
        f"pausing {where}: waiting for {in_flight} {samples} in flight (teacher replies and "
        "scores) to be stored, so that none is asked again on resume…"
    )


def stored_stages(st: RunStatus) -> list[StageProgress]:
    """A stored run's counts as progress rows (no failures per stage: they are listed apart)."""
    return [StageProgress(name, st.samples, done) for name, done in st.stages.items()]


def status_text(st: RunStatus, status: str) -> str:
    text = (
        f"run {st.run_id} {status} · {st.dataset} · teacher {st.teacher} · student "
        f"{st.student} · kept {st.kept} · {st.teacher_calls} teacher calls"
    )
    if st.failures:
        text += f"\nfailures: {failures_text(st.failures)}"
    if st.error:
        text += f"\nerror: {st.error}"
    return text


def summary_text(s: RunSummary) -> str:
    branches = ", ".join(f"{b} {n}" for b, n in sorted(s.by_branch.items())) or "none"
    text = (
        f"run {s.run_id} {s.status} in {s.elapsed_s:.0f}s: kept {s.kept}, rejected "
        f"{s.rejected}; branches {branches}"
    )
    if s.failures:
        text += f"; failures: {failures_text(s.failures)}"
    return text


class RunLog(RichLog):
    """The live log: long lines wrap, text is plain (lines quote teacher replies and errors)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(max_lines=LOG_LINES, wrap=True, markup=False, highlight=False, id=id)
        self.texts: deque[str] = deque(maxlen=LOG_LINES)
        """The lines as written, unwrapped (what a copy of the log would hold)."""

    def add(self, lines: list[str]) -> None:
        for line in lines:
            shown = visible(line)
            self.texts.append(shown)
            self.write(Text(shown))


class RunPane(Pane):
    """The run form, the store's runs, the stage bars, the numbers and the live log."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "start", "Start"),
        Binding("u", "resume", "Resume"),
        Binding("p", "pause", "Pause"),
        Binding("c", "cancel", "Cancel run"),
        Binding("r", "reload", "Refresh", show=False),
    ]

    def compose(self) -> ComposeResult:
        with Horizontal(classes="form"):
            yield Select([], prompt="dataset", compact=True, id="dataset")
            yield Select([], prompt="teacher", compact=True, id="teacher")
            yield Select([], prompt="student", compact=True, id="student")
            yield Select(
                [("profile default", "default"), ("profile paper", "paper")],
                value="default",
                allow_blank=False,
                compact=True,
                id="profile",
            )
            yield Input(
                placeholder="limit", type="integer", valid_empty=True, compact=True, id="limit"
            )
        yield ArrowTable(
            "no runs yet: choose a dataset and press s", fallback="#dataset", id="runs-table"
        )
        yield StageBars(id="stages")
        yield StatusLine(id="run-stats")
        yield RunLog(id="run-log")

    def on_mount(self) -> None:
        self.stop_event = threading.Event()
        self.pipeline_worker: Worker[None] | None = None
        self.active_run: int | None = None
        self.last_progress: RunProgress | None = None
        self.run_ids: list[int] = []
        self.run_statuses: list[str] = []
        self._log_buffer: deque[str] = deque()
        self._log_lock = threading.Lock()
        self.announced = False

    def activated(self) -> None:
        self.load_form()
        # The first time the tab is shown, the log says which runs can be resumed.
        self.load_runs(announce=not self.announced)
        self.announced = True

    def on_unmount(self) -> None:
        # However the app ends, a run in progress stops at the next unit of work (then 'paused').
        self.stop_event.set()

    def focus_main(self) -> None:
        self.query_one("#runs-table", ArrowTable).focus_table()

    @property
    def running(self) -> bool:
        return self.pipeline_worker is not None and self.pipeline_worker.state in (
            WorkerState.PENDING,
            WorkerState.RUNNING,
        )

    # ------------------------------------------------------------ the form and the runs table

    @work(thread=True, group="run-form", exclusive=True, exit_on_error=False)
    def load_form(self) -> None:
        datasets = [
            str(r[0]) for r in self.ctx.store.query("SELECT name FROM datasets ORDER BY dataset_id")
        ]
        try:
            config: ModelsConfig | None = self.ctx.load_models()
        except ConfigError as exc:
            config = None
            self.write_log(f"models.toml: {exc}")
        self.from_thread(self._fill_form, datasets, config)

    def _fill_form(self, datasets: list[str], config: ModelsConfig | None) -> None:
        _refill(self.query_one("#dataset", Select), datasets, datasets[-1] if datasets else None)
        if config is not None:
            _refill(
                self.query_one("#teacher", Select),
                ["auto", *config.teachers],
                config.defaults.teacher,
            )
            _refill(
                self.query_one("#student", Select), list(config.students), config.defaults.student
            )

    @work(thread=True, group="run-list", exclusive=True, exit_on_error=False)
    def load_runs(self, announce: bool = False) -> None:
        runs = list_runs(self.ctx.store)
        self.from_thread(self._show_runs, runs, announce)

    async def _show_runs(self, runs: list[dict[str, Any]], announce: bool) -> None:
        for r in runs:
            # This app holds the store, so a 'running' run it is not running was interrupted.
            if r["status"] == Status.RUNNING and r["run_id"] != self.active_run:
                r["status"] = INTERRUPTED
        self.run_ids = [int(r["run_id"]) for r in runs]
        self.run_statuses = [str(r["status"]) for r in runs]
        table = pa.table(
            {
                "run": pa.array(self.run_ids, pa.int64()),
                "dataset": pa.array([r["dataset"] for r in runs], pa.string()),
                "teacher": pa.array([r["teacher_name"] for r in runs], pa.string()),
                "student": pa.array([r["student_name"] for r in runs], pa.string()),
                "status": pa.array(self.run_statuses, pa.string()),
                "decided": pa.array([int(r["decided"]) for r in runs], pa.int64()),
            }
        )
        view = self.query_one("#runs-table", ArrowTable)
        cursor = view.table.cursor_row if view.table is not None else len(runs) - 1
        if self.active_run in self.run_ids:
            cursor = self.run_ids.index(self.active_run)
        await view.show(
            table, f"runs: {len(runs)} (u resumes the highlighted one)", cursor_row=max(cursor, 0)
        )
        if announce:
            for run_id, status in zip(self.run_ids, self.run_statuses, strict=True):
                if resumable(status):
                    self.write_log(f"run {run_id} is {status}: highlight it and press u to resume")

    def highlighted_run(self) -> tuple[int, str] | None:
        table = self.query_one("#runs-table", ArrowTable).table
        if table is None or not 0 <= table.cursor_row < len(self.run_ids):
            return None
        return self.run_ids[table.cursor_row], self.run_statuses[table.cursor_row]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if not self.running and 0 <= event.cursor_row < len(self.run_ids):
            self.show_stored(self.run_ids[event.cursor_row], self.run_statuses[event.cursor_row])

    @work(thread=True, group="run-stored", exclusive=True, exit_on_error=False)
    def show_stored(self, run_id: int, status: str) -> None:
        st = run_status(self.ctx.store, run_id)
        self.from_thread(self._show_stored, st, status)

    async def _show_stored(self, st: RunStatus, status: str) -> None:
        if self.running:
            return
        await self.query_one("#stages", StageBars).show(stored_stages(st))
        self.query_one("#run-stats", StatusLine).set(status_text(st, status))

    def action_reload(self) -> None:
        self.activated()

    # ------------------------------------------------------------ actions

    def options(self) -> RunOptions | None:
        dataset = self.query_one("#dataset", Select).value
        if not isinstance(dataset, str):
            self.notify("Import a dataset first (tab 1), then choose it here.", severity="warning")
            return None
        teacher = self.query_one("#teacher", Select).value
        student = self.query_one("#student", Select).value
        limit = self.query_one("#limit", Input).value.strip()
        profile = self.query_one("#profile", Select).value
        return RunOptions(
            dataset=dataset,
            teacher=teacher if isinstance(teacher, str) else "auto",
            student=student if isinstance(student, str) else None,
            limit=int(limit) if limit and int(limit) > 0 else None,
            profile=profile if isinstance(profile, str) else "default",
        )

    def action_start(self) -> None:
        """Start a run with the form's settings (an unfinished run with the same ones resumes)."""
        if self.running:
            self.notify("A run is in progress: pause it (p) first.", severity="warning")
            return
        options = self.options()
        if options is not None:
            self.launch(options, None)

    def action_resume(self) -> None:
        if self.running:
            self.notify("A run is in progress already.", severity="warning")
            return
        chosen = self.highlighted_run()
        if chosen is None or not resumable(chosen[1]):
            state = f"is {chosen[1]}" if chosen else "is not chosen"
            self.notify(f"Nothing to resume: the highlighted run {state}.", severity="warning")
            return
        self.launch(None, chosen[0])

    def action_pause(self) -> None:
        if not self.running:
            self.notify("No run in progress.", severity="warning")
            return
        self.stop_event.set()
        self.write_log(self.waiting())

    def waiting(self) -> str:
        """What pausing the run in progress waits for, as the latest progress knows it."""
        progress = self.last_progress
        in_flight = progress.in_flight if progress is not None else 0
        return waiting_text(self.active_run, in_flight)

    async def pause_and_wait(self) -> None:
        """Stop the run in progress and wait until the pipeline has stored its work."""
        self.stop_event.set()
        if self.pipeline_worker is not None:
            with contextlib.suppress(Exception):
                await self.pipeline_worker.wait()

    @work(group="run-cancel", exit_on_error=False)
    async def action_cancel(self) -> None:
        run_id = self.active_run if self.running else None
        if run_id is None:
            chosen = self.highlighted_run()
            if chosen is None or chosen[1] in (Status.DONE, Status.CANCELLED):
                self.notify("No run to cancel.", severity="warning")
                return
            run_id = chosen[0]
        question = (
            f"Cancel run {run_id}? What it stored is kept for browsing, but it will not be resumed."
        )
        if not await self.app.push_screen_wait(Confirm(question, yes="Cancel run", no="Keep")):
            return
        if self.running:
            self.write_log(f"cancelling run {run_id}: finishing the work in flight…")
            await self.pause_and_wait()
        await self.cancel_stored(run_id).wait()

    @work(thread=True, group="run-cancel-store", exit_on_error=False)
    def cancel_stored(self, run_id: int) -> None:
        cancel_run(self.ctx.store, run_id)
        self.write_log(f"run {run_id} cancelled")
        self.app.call_from_thread(self.load_runs)

    # ------------------------------------------------------------ the run's thread

    def launch(self, options: RunOptions | None, run_id: int | None) -> None:
        self.stop_event = threading.Event()
        self.last_progress = None
        self.active_run = run_id
        self.query_one("#run-stats", StatusLine).set("starting… (loading the models)")
        self.pipeline_worker = self.execute(options, run_id, self.stop_event)

    @work(thread=True, group="run", exit_on_error=False)
    def execute(
        self, options: RunOptions | None, run_id: int | None, stop: threading.Event
    ) -> None:
        store = self.ctx.store
        try:
            config = self.ctx.load_models()
            if run_id is None:
                assert options is not None
                run_id = prepare_run(store, options, config)
            self.post_message(RunStarted(run_id))
            summary = run_pipeline(
                store, run_id, config, progress=self._progress, stop=stop, log=self.write_log
            )
        except Exception as exc:
            self.post_message(RunEnded(run_id, None, exc))
            if not isinstance(exc, EXPECTED_ERRORS):
                raise
            return
        self.post_message(RunEnded(run_id, summary, None))

    def _progress(self, progress: RunProgress) -> None:
        self.post_message(RunProgressed(progress))

    def write_log(self, line: str) -> None:
        """Add a line to the live log; safe from any thread."""
        with self._log_lock:
            self._log_buffer.append(line)
        self.post_message(RunLogged())

    # ------------------------------------------------------------ messages, on the UI thread

    def on_run_started(self, message: RunStarted) -> None:
        self.active_run = message.run_id
        self.post_message(RunChosen(message.run_id))
        self.write_log(f"run {message.run_id} started")
        self.load_runs()

    async def on_run_progressed(self, message: RunProgressed) -> None:
        self.last_progress = message.progress
        await self.query_one("#stages", StageBars).show(message.progress.stages)
        if self.stop_event.is_set():
            text = waiting_text(message.progress.run_id, message.progress.in_flight)
            self.query_one("#run-stats", StatusLine).set(text, "warning")
        else:
            self.query_one("#run-stats", StatusLine).set(progress_text(message.progress))

    def on_run_logged(self, _message: RunLogged) -> None:
        with self._log_lock:
            lines = list(self._log_buffer)
            self._log_buffer.clear()
        if lines:
            self.query_one("#run-log", RunLog).add(lines)

    def on_run_ended(self, message: RunEnded) -> None:
        if message.summary is not None:
            self.write_log(summary_text(message.summary))
            self.notify(
                summary_text(message.summary),
                title="run finished"
                if message.summary.status == Status.DONE
                else f"run {message.summary.status}",
            )
            self.query_one("#run-stats", StatusLine).set(summary_text(message.summary))
        elif message.error is not None:
            where = f"run {message.run_id}" if message.run_id is not None else "the run"
            self.write_log(f"{where} stopped with an error: {message.error}")
            self.query_one("#run-stats", StatusLine).set(f"error: {message.error}")
            if isinstance(message.error, EXPECTED_ERRORS):
                self.notify(str(message.error), title="cannot run", severity="error")
        self.active_run = None
        self.load_runs()


def _refill(select: Select[str], values: list[str], preferred: str | None) -> None:
    """Offer `values`, keeping the current choice if it is still there, else `preferred`."""
    current = select.value
    # Names are data: shown as plain text, never as markup.
    select.set_options([(Text(visible(v, one_line=True)), v) for v in values])
    if isinstance(current, str) and current in values:
        select.value = current
    elif preferred is not None and preferred in values:
        select.value = preferred
