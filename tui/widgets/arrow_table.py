"""A fast table fed with Arrow tables from DuckDB, replaced whole on each update, with a caption
that says honestly how much of the result it shows."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Static
from textual_fastdatatable import ArrowBackend

from srt_local.visible import CONTROL, visible

if TYPE_CHECKING:
    from textual_fastdatatable import DataTable
else:
    from textual_fastdatatable.data_table import DataTable

__all__ = ["ArrowTable", "DataTable", "RowTable", "shown"]


def shown(data: pa.Table) -> pa.Table:
    """`data` with the control characters of its text columns made visible: a stored ANSI escape
    is shown, never sent to the terminal."""
    for i, field in enumerate(data.schema):
        if not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
            continue
        column = data.column(i)
        if pc.any(pc.match_substring_regex(column, CONTROL.pattern)).as_py():
            texts = [None if v is None else visible(v) for v in column.to_pylist()]
            data = data.set_column(i, field, pa.array(texts, type=field.type))
    return data


class RowTable(DataTable, inherit_bindings=False):
    """A DataTable whose tab and shift+tab move the focus, as everywhere else, not the cursor."""

    BINDINGS: ClassVar[list[BindingType]] = [
        b
        for b in DataTable.BINDINGS
        if not (isinstance(b, Binding) and b.key in ("tab", "shift+tab"))
    ]


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
        fallback: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        """`fallback`: a selector of the widget that takes the focus instead when the table is
        asked for it but has no rows."""
        super().__init__(id=id, classes=classes)
        self._empty = empty
        self._max_width = max_column_width
        self._fallback = fallback
        self._loaded = False
        self.rows = 0
        # Whether the table should hold the focus: set when it gets (or is asked to take) the
        # focus, cleared when the focus goes to a widget elsewhere. A new table inherits it.
        self._sticky = False

    def compose(self) -> ComposeResult:
        yield Static("", classes="caption")
        yield Static(self._empty, classes="empty")

    def on_mount(self) -> None:
        self.watch(self.screen, "focused", self._focus_moved, init=False)

    def _focus_moved(self, widget: Widget | None) -> None:
        if widget is not None:
            self._sticky = self in widget.ancestors_with_self

    @property
    def table(self) -> DataTable | None:
        """The current DataTable, if any rows have been shown."""
        found = self.query(DataTable)
        return found.last() if found else None

    async def show(
        self, data: pa.Table, caption: str = "", cursor_row: int = 0, empty: str | None = None
    ) -> None:
        """Replace the table with `data`; keep the focus; put the cursor on `cursor_row`."""
        old = list(self.query(".empty, DataTable"))
        label = self.query_one(".caption", Static)
        label.update(caption)
        label.display = bool(caption)
        self.rows = data.num_rows
        new: Static | DataTable
        if data.num_rows == 0:
            new = Static(empty or self._empty, classes="empty")
        else:
            new = RowTable(
                backend=ArrowBackend(shown(data)),
                cursor_type="row",
                show_row_labels=False,
                max_column_content_width=self._max_width,
                null_rep="·",
                render_markup=False,
            )
        # The new table goes in before the old one leaves and takes the focus at once (set
        # directly, not deferred), so the focus never falls to a neighbour of the old one.
        await self.mount(new)
        self._loaded = True
        take_focus = self._sticky and self._shown()
        if isinstance(new, DataTable):
            if cursor_row:
                new.move_cursor(row=min(cursor_row, data.num_rows - 1))
            if take_focus:
                self.screen.set_focus(new)
        elif take_focus:
            self._focus_fallback()
        await self.remove_children(old)

    def _shown(self) -> bool:
        """Whether every container up to the screen is displayed (its tab is the active one)."""
        return all(node.display for node in self.ancestors_with_self if isinstance(node, Widget))

    def _focus_fallback(self) -> None:
        if self._fallback is not None:
            self.screen.set_focus(self.screen.query_one(self._fallback))

    def focus_table(self) -> None:
        """Focus the table, now or when its rows arrive (the fallback if there are none)."""
        self._sticky = True
        table = self.table
        if table is not None:
            self.screen.set_focus(table)
        elif self._loaded:
            self._focus_fallback()
