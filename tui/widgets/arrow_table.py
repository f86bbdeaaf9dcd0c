"""A fast table fed with Arrow tables from DuckDB, replaced whole on each update, with a caption
that says honestly how much of the result it shows."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Static
from textual_fastdatatable import ArrowBackend

if TYPE_CHECKING:
    from textual_fastdatatable import DataTable
else:
    from textual_fastdatatable.data_table import DataTable

__all__ = ["ArrowTable", "DataTable"]


class ArrowTable(Vertical):
    """A caption line over a textual-fastdatatable DataTable that `show()` swaps for a new one."""

    DEFAULT_CSS = """
    ArrowTable {
        height: 1fr;
    }
    ArrowTable > .caption {
        height: 1;
        color: $text-muted;
        padding: 0 1;
    }
    ArrowTable > DataTable {
        height: 1fr;
    }
    ArrowTable > .empty {
        height: 1fr;
        color: $text-muted;
        padding: 0 1;
    }
    """

    def __init__(
        self,
        empty: str = "nothing to show yet",
        *,
        max_column_width: int = 40,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self._empty = empty
        self._max_width = max_column_width
        self.rows = 0
        self._wants_focus = False

    def compose(self) -> ComposeResult:
        yield Static("", classes="caption")
        yield Static(self._empty, classes="empty")

    @property
    def table(self) -> DataTable | None:
        """The current DataTable, if any rows have been shown."""
        found = self.query(DataTable)
        return found.last() if found else None

    async def show(
        self, data: pa.Table, caption: str = "", cursor_row: int = 0, empty: str | None = None
    ) -> None:
        """Replace the table with `data`; keep focus and put the cursor on `cursor_row`."""
        old = list(self.query(".empty, DataTable"))
        label = self.query_one(".caption", Static)
        label.update(caption)
        label.display = bool(caption)
        self.rows = data.num_rows
        new: Static | DataTable
        if data.num_rows == 0:
            new = Static(empty or self._empty, classes="empty")
        else:
            new = DataTable(
                backend=ArrowBackend(data),
                cursor_type="row",
                show_row_labels=False,
                max_column_content_width=self._max_width,
                null_rep="·",
                render_markup=False,
            )
        # The new table goes in before the old one leaves, and takes the focus from it at once
        # (no await in between), so the focus never falls to another widget.
        await self.mount(new)
        if isinstance(new, DataTable):
            if cursor_row:
                new.move_cursor(row=min(cursor_row, data.num_rows - 1))
            # A focus asked for before the rows came counts only while this tab is still shown.
            if any(w.has_focus for w in old) or (self._wants_focus and self._shown()):
                new.focus()
            self._wants_focus = False
        await self.remove_children(old)

    def _shown(self) -> bool:
        return all(node.display for node in self.ancestors_with_self if isinstance(node, Widget))

    def focus_table(self) -> bool:
        """Focus the table; False when there is none to focus."""
        table = self.table
        if table is None:
            self._wants_focus = True
            return False
        table.focus()
        return True
