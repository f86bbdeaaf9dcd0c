"""What every tab of the app shares: the store, the models config and a hook for when it shows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, ParamSpec, cast

from textual.widgets import Input, TabPane, TextArea

if TYPE_CHECKING:
    from tui.app import SrtApp

P = ParamSpec("P")


class Pane(TabPane):
    """One tab of the app. `activated()` runs each time the tab is shown, to refresh its data."""

    @property
    def srt(self) -> SrtApp:
        return cast("SrtApp", self.app)

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
