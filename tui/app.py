"""The srt-local app: seven tabs over one store, opened once read-write and shared by every tab.

Every store read and every model call runs in a thread worker; the UI thread only lays out what the
workers hand back, so keys are answered while the student scores and the teacher writes.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.widgets import Footer, TabbedContent, TabPane, Tabs
from textual.worker import Worker, WorkerState

from srt_local.config import load_models
from srt_local.store import Store
from tui.context import LocalMachine, Machine, PaneContext
from tui.messages import RunChosen
from tui.screens.base import Pane
from tui.screens.browse import BrowsePane
from tui.screens.datasets import DatasetsPane
from tui.screens.distributions import DistributionsPane
from tui.screens.export import ExportPane
from tui.screens.models import ModelsPane
from tui.screens.report import ReportPane
from tui.screens.run import RunPane
from tui.screens.sql import SqlPane

THEMES = {"dark": "textual-dark", "light": "textual-light"}
TABS = ("datasets", "models", "run", "browse", "distributions", "sql", "export", "report")


def terminal_is_light() -> bool:
    """Whether the terminal says it has a light background ($COLORFGBG, as rxvt and others set)."""
    parts = os.environ.get("COLORFGBG", "").split(";")
    try:
        background = int(parts[-1])
    except ValueError:
        return False
    return background in (7, 15)


class SrtTabs(TabbedContent):
    """The app's tabs; they change only when the user picks one."""

    def on_tab_pane_focused(self, event: TabPane.Focused) -> None:
        # TabbedContent shows the tab of any widget that gets the focus. A focus given while a
        # tab was shown can arrive after the user has left it: that must not switch back.
        if event.tab_pane.id != self.active:
            event.prevent_default()
            event.stop()


class SrtApp(App[None]):
    """Import, run, browse, chart, query and export: the whole method over one DuckDB store."""

    CSS_PATH = "app.tcss"
    TITLE = "srt-local"
    ENABLE_COMMAND_PALETTE = True

    BINDINGS: ClassVar[list[BindingType]] = [
        *(
            Binding(str(i), f"show_tab('{tab}')", tab.title(), show=False)
            for i, tab in enumerate(TABS, start=1)
        ),
        Binding("ctrl+t", "toggle_theme", "Light/dark"),
        Binding("escape", "leave_field", "Leave the field", show=False),
    ]

    current_run: reactive[int | None] = reactive(None)
    """The run that Browse, Distributions and Export show. The app owns it: panes ask for a change
    with `RunChosen` and get it pushed down (data binding)."""

    def __init__(
        self,
        store: Store,
        models_file: Path | None = None,
        theme: str | None = None,
        machine: Machine | None = None,
    ) -> None:
        """`machine`: the facts the Models tab shows (tests pass fixed ones)."""
        super().__init__()
        self.ctx = PaneContext(
            store=store,
            load_models=partial(load_models, models_file),
            machine=machine or LocalMachine(),
        )
        self.worker_errors: list[BaseException] = []
        if theme is None:
            theme = "light" if terminal_is_light() else "dark"
        self.theme = THEMES[theme]

    def compose(self) -> ComposeResult:
        ctx = self.ctx
        with SrtTabs(initial="datasets", id="tabs"):
            yield DatasetsPane("1 Datasets", ctx, id="datasets")
            yield ModelsPane("2 Models", ctx, id="models")
            yield RunPane("3 Run", ctx, id="run")
            yield BrowsePane("4 Browse", ctx, id="browse").data_bind(SrtApp.current_run)
            yield DistributionsPane("5 Distributions", ctx, id="distributions").data_bind(
                SrtApp.current_run
            )
            yield SqlPane("6 SQL", ctx, id="sql")
            yield ExportPane("7 Export", ctx, id="export").data_bind(SrtApp.current_run)
            yield ReportPane("8 Report", ctx, id="report").data_bind(SrtApp.current_run)
        yield Footer()

    def on_mount(self) -> None:
        self.call_after_refresh(self._focus_pane, self.query_one(DatasetsPane))

    @on(RunChosen)
    def run_chosen(self, message: RunChosen) -> None:
        self.current_run = message.run_id

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane = event.pane
        if isinstance(pane, Pane):
            pane.activated()
            self.call_after_refresh(self._focus_pane, pane)

    def _focus_pane(self, pane: Pane) -> None:
        # Deferred: by now the user may have moved on to another tab.
        if self.query_one("#tabs", TabbedContent).active == pane.id:
            pane.focus_main()

    def action_show_tab(self, tab: str) -> None:
        tabs = self.query_one("#tabs", TabbedContent)
        # Park the focus on the tab bar first: a focused widget in the pane being hidden would
        # hand the focus to one of its hidden neighbours.
        self.screen.set_focus(tabs.query_one(Tabs))
        tabs.active = tab

    def action_toggle_theme(self) -> None:
        self.theme = THEMES["light"] if self.current_theme.dark else THEMES["dark"]

    def action_leave_field(self) -> None:
        """Escape from a text field to the tab's table or list, where the tab's keys and the
        digit keys work again."""
        pane = self.query_one("#tabs", TabbedContent).active_pane
        if isinstance(pane, Pane):
            pane.leave_field()

    async def action_quit(self) -> None:
        """Quit; a run in progress is paused first (the work in flight is finished and stored)."""
        run = self.query_one(RunPane)
        if run.running:
            self.notify("Pausing the run before quitting: finishing the work in flight…")
            await run.pause_and_wait()
        self.exit()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Anything a worker did not expect is shown, not lost."""
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            error = event.worker.error
            self.worker_errors.append(error)
            self.notify(
                f"{type(error).__name__}: {error}",
                title=event.worker.name,
                severity="error",
                timeout=10,
            )
