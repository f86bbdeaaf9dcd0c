"""What every tab shares: its context (store, models.toml, machine), a hook for when it shows, the
focus rules, and, for the tabs that show one run, the run list and the current run.

A pane is the content of one tab. The app mounts it into its tab the first time the tab is shown,
so the first paint only builds the first tab (and imports only what that tab needs)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, ParamSpec

from textual import work
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import Input, TextArea

from srt_local.run_status import list_runs
from tui.context import PaneContext
from tui.messages import RunChosen
from tui.widgets.run_picker import RunPicker

P = ParamSpec("P")


class Pane(Vertical):
    """The content of one tab. `activated()` runs each time the tab is shown (the first time
    too, right after the pane is mounted): it loads or refreshes the tab's data."""

    DEFAULT_CSS = """
    Pane {
        height: 1fr;
    }
    """

    HELP: ClassVar[str] = ""
    """What the help screen says about the tab beyond its keys."""

    def __init__(self, ctx: PaneContext, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.ctx = ctx

    def activated(self) -> None:
        """Refresh what the tab shows; called when it becomes the active tab."""

    def focus_main(self) -> None:
        """Put the focus on the tab's main widget (by default its first focusable one)."""
        for widget in self.query("*"):
            if widget.focusable:
                widget.focus()
                return

    def leave_field(self) -> None:
        """Move the focus out of a text field to the tab's first other widget (a table, a
        list...), where the tab's keys and the digit keys work again."""
        focused = self.app.focused
        if (
            focused is not None
            and not isinstance(focused, Input | TextArea)
            and (focused in self.query("*"))
        ):
            return
        for widget in self.query("*"):
            if widget.focusable and not isinstance(widget, Input | TextArea):
                widget.focus()
                return

    def from_thread(
        self, callback: Callable[P, Awaitable[None] | None], *args: P.args, **kwargs: P.kwargs
    ) -> None:
        """Run a UI update from a worker thread, on the UI thread, and wait until it is done."""
        # mypy cannot bind Textual's return TypeVar to a coroutine function's None.
        self.app.call_from_thread(callback, *args, **kwargs)  # type: ignore[arg-type]


class RunViewPane(Pane):
    """A tab that shows one run, chosen with its RunPicker.

    The app owns the current run and pushes it down into `current_run`; the picker
    posts the user's choice up as `RunChosen`. Subclasses draw the run in `show_run`.
    """

    current_run: reactive[int | None] = reactive(None, init=False)
    """The app's current run, pushed down by the app."""

    @property
    def picker(self) -> RunPicker:
        return self.query_one(RunPicker)

    def activated(self) -> None:
        self.load_runs()

    def action_reload(self) -> None:
        self.load_runs()

    @work(thread=True, group="pane-runs", exclusive=True, exit_on_error=False)
    def load_runs(self) -> None:
        runs = list_runs(self.ctx.store)
        self.from_thread(self._runs_loaded, runs)

    def _runs_loaded(self, runs: list[dict[str, Any]]) -> None:
        chosen = self.picker.load(runs, self.current_run)
        if chosen is None:
            return
        if chosen != self.current_run:
            # No run chosen yet (or it is gone): the latest becomes the app's current run, which
            # comes back down through `watch_current_run`.
            self.post_message(RunChosen(chosen))
        else:
            self.show_run(chosen)

    def watch_current_run(self, run_id: int | None) -> None:
        if not self.is_mounted:
            return
        pickers = self.query(RunPicker)
        if not pickers:
            return  # not composed yet: the run list, once loaded, shows the current run
        picker = pickers.first()
        picker.follow(run_id)
        if run_id is not None and run_id in picker.run_ids:
            self.show_run(run_id)

    def show_run(self, run_id: int) -> None:
        """Load and draw `run_id` (the run shown has changed, or its list was reloaded)."""
