"""What every tab of the app shares: the store, the models config and a hook for when it shows."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.widgets import TabPane

if TYPE_CHECKING:
    from tui.app import SrtApp


class Pane(TabPane):
    """One tab of the app. `activated()` runs each time the tab is shown, to refresh its data."""

    @property
    def srt(self) -> SrtApp:
        return cast("SrtApp", self.app)

    def activated(self) -> None:
        """Refresh what the tab shows; called when it becomes the active tab."""

    def focus_main(self) -> None:
        """Put the focus on the tab's main widget."""
        self.focus_next()
