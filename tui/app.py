"""The srt-local app: seven tabs over one store, opened once read-write and shared by every tab.

Every store read and every model call runs in a thread worker; the UI thread only lays out what the
workers hand back, so keys are answered while the student scores and the teacher writes.

First paint: only the first tab is built and imported before it. Right after it, each other tab's
module (with pyarrow, plotext...) is imported in a thread and its pane mounted, one at a time; a
tab shown before that mounts its pane at once.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.notifications import SeverityLevel
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, TabbedContent, TabPane, Tabs
from textual.worker import Worker, WorkerState

from srt_local.config import load_models
from srt_local.store import Store
from srt_local.textsafe import visible
from tui.context import LocalMachine, Machine, PaneContext
from tui.messages import RunChosen
from tui.screens.base import Pane, RunViewPane
from tui.widgets.help import HelpScreen

if TYPE_CHECKING:
    from tui.screens.run import RunPane

THEMES = {"dark": "textual-dark", "light": "textual-light"}
# tab id -> (title, the pane's module and class)
PANES: dict[str, tuple[str, str]] = {
    "datasets": ("Datasets", "tui.screens.datasets:DatasetsPane"),
    "models": ("Models", "tui.screens.models:ModelsPane"),
    "run": ("Run", "tui.screens.run:RunPane"),
    "browse": ("Browse", "tui.screens.browse:BrowsePane"),
    "distributions": ("Distributions", "tui.screens.distributions:DistributionsPane"),
    "sql": ("SQL", "tui.screens.sql:SqlPane"),
    "export": ("Export", "tui.screens.export:ExportPane"),
    "report": ("Report", "tui.screens.report:ReportPane"),
}
TABS = tuple(PANES)


def pane_class(tab: str) -> type[Pane]:
    module, name = PANES[tab][1].split(":")
    found = getattr(import_module(module), name)
    assert issubclass(found, Pane)
    return found


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
        Binding("ctrl+q", "quit", "Quit", priority=True),
        # F1 is the one the footer shows: ? is not a key while a text field has the focus.
        Binding("f1", "help", "Help"),
        Binding("question_mark", "help", "Help", show=False),
        Binding("ctrl+t", "toggle_theme", "Light/dark"),
        Binding("escape", "leave_field", "Leave the field", show=False),
    ]

    current_run: reactive[int | None] = reactive(None)
    """The run that Browse, Distributions and Export show. The app owns it: panes ask for a change
    with `RunChosen` and the app pushes it down into each pane's `current_run`."""

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
        self.quitting = False
        self.panes: dict[str, Pane] = {}
        """The panes mounted so far, by tab (each is mounted the first time its tab shows)."""
        self.pane_mounted: dict[str, asyncio.Event] = {}
        if theme is None:
            theme = "light" if terminal_is_light() else "dark"
        self.theme = THEMES[theme]

    def compose(self) -> ComposeResult:
        first = TABS[0]
        with SrtTabs(initial=first, id="tabs"):
            for i, (tab, (title, _)) in enumerate(PANES.items(), start=1):
                with TabPane(f"{i} {title}", id=tab):
                    if tab == first:
                        pane = self.panes[tab] = pane_class(tab)(self.ctx, id=f"{tab}-pane")
                        self.pane_mounted[tab] = asyncio.Event()
                        self.pane_mounted[tab].set()
                        yield pane
        yield Footer()

    def on_mount(self) -> None:
        self.call_after_refresh(self.warm_up)

    @work(thread=True, group="warm-up", exit_on_error=False)
    def warm_up(self) -> None:
        """After the first paint: import each tab's module here, off the UI thread, then mount
        its pane (one at a time, so keys are answered in between): showing a tab is then quick."""
        for tab in TABS:
            pane_class(tab)
            # mypy cannot bind Textual's return TypeVar to a coroutine function's result.
            self.call_from_thread(self.mount_pane, tab)  # type: ignore[arg-type]

    async def mount_pane(self, tab: str) -> Pane:
        """The pane of `tab`, mounted into it the first time it is asked for."""
        pane = self.panes.get(tab)
        if pane is not None:
            # Asked again while it is being mounted (a palette command and the tab's activation).
            await self.pane_mounted[tab].wait()
            return pane
        pane = self.panes[tab] = pane_class(tab)(self.ctx, id=f"{tab}-pane")
        self.pane_mounted[tab] = asyncio.Event()
        if isinstance(pane, RunViewPane):
            pane.set_reactive(RunViewPane.current_run, self.current_run)
        await self.query_one(f"#{tab}", TabPane).mount(pane)
        self.pane_mounted[tab].set()
        return pane

    def watch_current_run(self, run_id: int | None) -> None:
        for pane in self.query(RunViewPane):
            pane.current_run = run_id

    @on(RunChosen)
    def run_chosen(self, message: RunChosen) -> None:
        self.current_run = message.run_id

    async def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        tab = event.pane.id
        if tab is None or tab not in PANES:
            return
        pane = await self.mount_pane(tab)
        pane.activated()
        self.call_after_refresh(self._focus_pane, tab, pane)

    def _focus_pane(self, tab: str, pane: Pane) -> None:
        # Deferred: by now the user may have moved on to another tab.
        if self.query_one("#tabs", TabbedContent).active == tab:
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
        pane = self.active_pane
        if pane is not None:
            pane.leave_field()

    @property
    def active_pane(self) -> Pane | None:
        holder = self.query_one("#tabs", TabbedContent).active_pane
        found = holder.query(Pane) if holder is not None else None
        return found.first() if found else None

    def action_help(self) -> None:
        """The keys of the tab in use and the app's, in a dialog."""
        if isinstance(self.screen, HelpScreen):
            return
        pane = self.active_pane
        tab_keys: list[tuple[str, str]] = []
        title, notes = "", ""
        if pane is not None and pane.parent is not None and pane.parent.id in PANES:
            title = PANES[pane.parent.id][0]
            notes = pane.HELP
            # One line per action: "ctrl+r,f5" is shown as "^r / f5".
            keys: dict[tuple[str, str], list[str]] = {}
            for binding in Binding.make_bindings(pane.BINDINGS):
                shown = keys.setdefault((binding.action, binding.description), [])
                shown.append(self.get_key_display(binding))
            tab_keys = [(" / ".join(k), description) for (_, description), k in keys.items()]
        app_keys = [
            ("1 … 7", "show a tab: " + ", ".join(f"{i} {t}" for i, t in enumerate(TABS, 1))),
            ("escape", "leave a text field (then the keys above work)"),
            ("? / f1", "this help"),
            ("ctrl+p", "command palette: every command of the app"),
            ("ctrl+t", "light or dark theme"),
            ("ctrl+q", "quit (a run in progress is paused first and resumes later)"),
        ]
        self.push_screen(HelpScreen(title, tab_keys, app_keys, notes))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The command palette (ctrl+p): the app's own commands, then Textual's."""
        for i, tab in enumerate(TABS, start=1):
            yield SystemCommand(
                f"Tab {i}: {tab.title()}", f"Show the {tab} tab", partial(self.action_show_tab, tab)
            )
        yield SystemCommand(
            "Import a file…",
            "Pick a dataset file and import it",
            self._pane_command("datasets", "pick_file"),
        )
        yield SystemCommand(
            "Load the demo data",
            "Import the small dataset shipped with srt-local",
            self._pane_command("datasets", "load_demo"),
        )
        yield SystemCommand(
            "Start a run", "With the Run tab's settings", self._pane_command("run", "start")
        )
        yield SystemCommand(
            "Pause the run",
            "Finish the work in flight and stop",
            self._pane_command("run", "pause"),
        )
        yield SystemCommand(
            "Resume a run",
            "The run highlighted in the Run tab",
            self._pane_command("run", "resume"),
        )
        yield SystemCommand("Cancel a run", "Asks first", self._pane_command("run", "cancel"))
        yield SystemCommand(
            "Export the selection",
            "Write the current run's selection (Export tab)",
            self._pane_command("export", "export"),
        )
        yield SystemCommand(
            "Run the SQL query",
            "The SQL tab's editor, read only",
            self._pane_command("sql", "run_query"),
        )
        yield SystemCommand(
            "Export the SQL results",
            "To a .csv, .json, .jsonl or .parquet file",
            self._pane_command("sql", "export_results"),
        )
        yield SystemCommand("Help", "The keys of the tab in use", self.action_help)
        yield SystemCommand("Light/dark theme", "Switch the theme", self.action_toggle_theme)
        yield from super().get_system_commands(screen)

    def _pane_command(self, tab: str, action: str) -> Callable[[], Awaitable[None]]:
        """A palette command: show `tab`, then run its action `action` there."""

        async def command() -> None:
            self.action_show_tab(tab)
            await self.run_action(action, await self.mount_pane(tab))

        return command

    async def action_quit(self) -> None:
        """Quit. A run in progress is paused first: the samples in flight are finished and
        stored (the notice says how many). A second ctrl+q quits at once; the run then shows as
        interrupted and its samples in flight are asked again on resume."""
        run = cast("RunPane | None", self.panes.get("run"))
        if run is None or not run.running or self.quitting:
            self.exit()
            return
        self.quitting = True
        waiting = run.waiting()
        run.write_log(waiting)
        self.notify(
            f"{waiting[0].upper()}{waiting[1:]} Press ctrl+q again to quit at once.",
            title="quitting",
            timeout=30,
        )
        self.run_worker(self._pause_then_exit(run), group="quit", exclusive=True)

    async def _pause_then_exit(self, run: RunPane) -> None:
        await run.pause_and_wait()
        self.exit()

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Every notification is plain text (they quote stored data, paths and errors), whatever
        the caller asks: never read as markup, control characters made visible."""
        super().notify(
            visible(message),
            title=visible(title),
            severity=severity,
            timeout=timeout,
            markup=False,
        )

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
