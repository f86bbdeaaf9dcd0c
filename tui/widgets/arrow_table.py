"""A fast table fed with Arrow tables from DuckDB, replaced whole on each update, with a caption
that says honestly how much of the result it shows. Cells and column names are shown exactly:
never read as markup, control characters made visible (srt_local.textsafe)."""

from __future__ import annotations

import json
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Static

from srt_local.textsafe import visible

if TYPE_CHECKING:
    # pyarrow and the table widget are imported when the first table is shown, not with the
    # app: they cost a good part of a second, and the first paint needs neither.
    import pyarrow as pa
    from textual_fastdatatable import DataTable

__all__ = ["ArrowTable", "row_table_class", "shown_exactly"]


def _cell_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return visible(value, one_line=True)
    return visible(json.dumps(value, ensure_ascii=False, default=str), one_line=True)


def shown_exactly(data: pa.Table) -> pa.Table:
    """`data` as it may be put on a screen: text columns (and nested ones, as JSON) with their
    control characters made visible on one line, and the column names likewise."""
    import pyarrow as pa

    columns: list[pa.Array | pa.ChunkedArray] = []
    for column in data.columns:
        kind = column.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_nested(kind):
            columns.append(pa.array([_cell_text(v) for v in column.to_pylist()], pa.string()))
        else:
            columns.append(column)
    names = [visible(name, one_line=True) for name in data.column_names]
    # Two names made equal by the rewriting would clash in the table: number the later ones.
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            names[i] = f"{name} ({seen[name]})"
    return pa.table(columns, names=names)


@cache
def row_table_class() -> type[DataTable]:
    """A DataTable whose tab and shift+tab move the focus, as everywhere else, not the cursor."""
    from textual_fastdatatable import DataTable

    class RowTable(DataTable, inherit_bindings=False):
        BINDINGS: ClassVar[list[BindingType]] = [
            b
            for b in DataTable.BINDINGS
            if not (isinstance(b, Binding) and b.key in ("tab", "shift+tab"))
        ]

    return RowTable


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
        cursor_type: Literal["row", "cell"] = "row",
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        """`fallback`: a selector of the widget that takes the focus instead when the table is
        asked for it but has no rows."""
        super().__init__(id=id, classes=classes)
        self._empty = empty
        self._max_width = max_column_width
        self._fallback = fallback
        self._cursor_type = cursor_type
        self._loaded = False
        self.rows = 0
        self.data: pa.Table | None = None
        """The rows shown, as given (not rewritten for the screen): for a full-cell view."""
        # Whether the table should hold the focus: set when it gets (or is asked to take) the
        # focus, cleared when the focus goes to a widget elsewhere. A new table inherits it.
        self._sticky = False

    def compose(self) -> ComposeResult:
        yield Static("", classes="caption", markup=False)
        yield Static(visible(self._empty), classes="empty", markup=False)

    def on_mount(self) -> None:
        self.watch(self.screen, "focused", self._focus_moved, init=False)

    def _focus_moved(self, widget: Widget | None) -> None:
        if widget is not None:
            self._sticky = self in widget.ancestors_with_self

    @property
    def table(self) -> DataTable | None:
        """The current DataTable, if any rows have been shown."""
        found = self.query("DataTable")
        return cast("DataTable", found.last()) if found else None

    async def show(
        self, data: pa.Table, caption: str = "", cursor_row: int = 0, empty: str | None = None
    ) -> None:
        """Replace the table with `data`; keep the focus; put the cursor on `cursor_row`."""
        from textual_fastdatatable import ArrowBackend, DataTable

        old = list(self.query(".empty, DataTable"))
        label = self.query_one(".caption", Static)
        label.update(visible(caption))
        label.display = bool(caption)
        self.rows = data.num_rows
        self.data = data
        new: Static | DataTable
        if data.num_rows == 0:
            new = Static(visible(empty or self._empty), classes="empty", markup=False)
        else:
            new = row_table_class()(
                backend=ArrowBackend(shown_exactly(data)),
                cursor_type=self._cursor_type,
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

    def cell(self) -> tuple[str, Any] | None:
        """The column name and the stored value under the cursor (None without rows)."""
        table = self.table
        if table is None or self.data is None or not self.data.num_rows:
            return None
        row, column = table.cursor_coordinate
        if not (0 <= row < self.data.num_rows and 0 <= column < self.data.num_columns):
            return None
        return self.data.column_names[column], self.data.column(column)[row].as_py()

    def focus_table(self) -> None:
        """Focus the table, now or when its rows arrive (the fallback if there are none)."""
        self._sticky = True
        table = self.table
        if table is not None:
            self.screen.set_focus(table)
        elif self._loaded:
            self._focus_fallback()
