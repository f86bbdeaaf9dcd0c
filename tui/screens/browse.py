"""Browse: a run's decisions in a fast table (filtered, sorted and paged by SQL), the highlighted
sample in full below, and the override keys: accept, reject, clear. Export follows overrides."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Input, Select
from textual.worker import get_current_worker

from srt_local.review import (
    BRANCHES,
    OUTCOMES,
    SORTS,
    BrowseFilter,
    SampleDetail,
    browse_page,
    sample_detail,
    set_override,
)
from tui.screens.base import RunViewPane
from tui.widgets.arrow_table import ArrowTable
from tui.widgets.run_picker import RunPicker
from tui.widgets.sample_view import SampleView

if TYPE_CHECKING:
    from textual_fastdatatable import DataTable

PAGE = 100
INSTRUCTION_WIDTH = 80  # characters of the instruction shown in a row


def page_labels(table: pa.Table) -> pa.Table:
    """A page of `browse_page` as the table shows it: rounded scores, yes/no, one-line text."""
    columns: dict[str, pa.Array] = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_floating(col.type):
            col = pc.round(col, 3)
        elif pa.types.is_boolean(col.type):
            col = pc.if_else(col, "yes", "no")
        elif name == "override":
            col = pc.fill_null(col, "")
        elif name == "instruction":
            one_line = pc.replace_substring_regex(col, r"\s+", " ")
            col = pc.utf8_slice_codeunits(one_line, 0, INSTRUCTION_WIDTH)
        columns[name] = col
    return pa.table(columns)


LEADING_COLUMNS = ("id", "branch", "kept", "instruction")


class BrowsePane(RunViewPane):
    """Filters on top, the decisions table, the sample detail."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "override('accept')", "Accept"),
        Binding("x", "override('reject')", "Reject"),
        Binding("c", "override('')", "Clear"),
        Binding("v", "next_version", "Version"),
        Binding("s", "next_sort", "Sort"),
        Binding("d", "flip_order", "Asc/desc", show=False),
        Binding("slash", "search", "Search", show=False),
        Binding("right_square_bracket", "page(1)", "Next page", show=False),
        Binding("left_square_bracket", "page(-1)", "Prev page", show=False),
        Binding("r", "reload", "Refresh", show=False),
    ]

    def compose(self) -> ComposeResult:
        with Horizontal(classes="form"):
            yield RunPicker(id="browse-run")
            yield Select([(b, b) for b in BRANCHES], prompt="any branch", compact=True, id="branch")
            yield Select(
                [(o, o) for o in OUTCOMES],
                value="all",
                allow_blank=False,
                compact=True,
                id="outcome",
            )
            yield Input(placeholder="/ search text", compact=True, id="search")
        yield ArrowTable(
            "no decisions: run the pipeline (tab 3) first", fallback="#browse-run", id="decisions"
        )
        yield SampleView(id="sample")

    def on_mount(self) -> None:
        self.browse_filter = BrowseFilter()
        self.page_offset = 0
        self.page_key: tuple[int, BrowseFilter, int] | None = None
        self.sample_ids: list[int] = []
        self.detail: SampleDetail | None = None
        self.kind: str | None = None
        self.shown_run: int | None = None

    def focus_main(self) -> None:
        self.query_one("#decisions", ArrowTable).focus_table()

    # ------------------------------------------------------------ loading

    def show_run(self, run_id: int) -> None:
        if run_id != self.shown_run:
            self.shown_run = run_id
            self.page_offset = 0
        self.reload()

    def reload(self, keep_cursor: bool = False) -> None:
        if self.shown_run is not None:
            self.load_page(self.shown_run, self.browse_filter, self.page_offset, keep_cursor)

    @work(thread=True, group="browse-page", exclusive=True, exit_on_error=False)
    def load_page(self, run_id: int, flt: BrowseFilter, offset: int, keep_cursor: bool) -> None:
        table, total = browse_page(self.ctx.store, run_id, flt, PAGE, offset)
        if not get_current_worker().is_cancelled:
            # The same page again (a refresh) keeps the row the user is on.
            same = (run_id, flt, offset) == self.page_key
            self.page_key = (run_id, flt, offset)
            self.from_thread(self._show_page, table, total, keep_cursor or same)

    async def _show_page(self, table: pa.Table, total: int, keep_cursor: bool) -> None:
        self.sample_ids = [int(i) for i in table.column("id").to_pylist()]
        # What a sample is comes first, so it shows at 80 columns; the scores scroll in on the
        # right.
        first = [c for c in LEADING_COLUMNS if c in table.column_names]
        table = table.select(first + [c for c in table.column_names if c not in first])
        view = self.query_one("#decisions", ArrowTable)
        cursor = view.table.cursor_row if keep_cursor and view.table is not None else 0
        await view.show(
            page_labels(table),
            self.caption(table.num_rows, total),
            cursor_row=cursor,
            empty="no decision matches" if total == 0 else None,
        )
        run_id = self.shown_run
        if not self.sample_ids:
            self.detail = None
            self.query_one(SampleView).clear("no sample to show")
        elif run_id is not None:
            self.load_detail(run_id, self.sample_ids[min(cursor, len(self.sample_ids) - 1)])

    def caption(self, n: int, total: int) -> str:
        f = self.browse_filter
        order = "↓" if f.descending else "↑"
        span = (
            f"rows {self.page_offset + 1:,}–{self.page_offset + n:,} of {total:,}"
            if n
            else "0 rows"
        )
        pages = " · [ ] pages" if total > PAGE else ""
        return f"{span} · sort {f.sort} {order}{pages}"

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        run_id = self.shown_run
        if run_id is not None and 0 <= event.cursor_row < len(self.sample_ids):
            self.load_detail(run_id, self.sample_ids[event.cursor_row])

    @work(thread=True, group="browse-detail", exclusive=True, exit_on_error=False)
    def load_detail(self, run_id: int, sample_id: int) -> None:
        detail = sample_detail(self.ctx.store, run_id, sample_id)
        if not get_current_worker().is_cancelled:
            self.from_thread(self._show_detail, detail)

    def _show_detail(self, detail: SampleDetail) -> None:
        same = self.detail is not None and self.detail.sample_id == detail.sample_id
        self.detail = detail
        kinds = detail.reflected_kinds()
        if not (same and self.kind in kinds):
            self.kind = kinds[0] if kinds else None
        self.query_one(SampleView).show(detail, self.kind)

    # ------------------------------------------------------------ filters and sorting

    @on(Select.Changed, "#branch, #outcome")
    def filters_changed(self) -> None:
        branch = self.query_one("#branch", Select).value
        outcome = self.query_one("#outcome", Select).value
        self.set_filter(
            branch=branch if isinstance(branch, str) else None,
            outcome=outcome if isinstance(outcome, str) else "all",
        )

    @on(Input.Submitted, "#search")
    def search_submitted(self, event: Input.Submitted) -> None:
        self.set_filter(text=event.value.strip())
        self.query_one("#decisions", ArrowTable).focus_table()

    def set_filter(self, **changes: object) -> None:
        self.browse_filter = replace(self.browse_filter, **changes)  # type: ignore[arg-type]
        self.page_offset = 0
        self.reload()

    def action_next_sort(self) -> None:
        keys = list(SORTS)
        self.set_filter(sort=keys[(keys.index(self.browse_filter.sort) + 1) % len(keys)])

    def action_flip_order(self) -> None:
        self.set_filter(descending=not self.browse_filter.descending)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        """A click on a column's header sorts by it; a second click flips the order."""
        label = str(event.label)
        key = "sample" if label == "id" else label
        if key in SORTS:
            flip = key == self.browse_filter.sort
            self.set_filter(
                sort=key, descending=not self.browse_filter.descending if flip else False
            )

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_page(self, step: int) -> None:
        view = self.query_one("#decisions", ArrowTable)
        if (step < 0 and self.page_offset == 0) or (step > 0 and view.rows < PAGE):
            return
        self.page_offset = max(0, self.page_offset + step * PAGE)
        self.reload()

    # ------------------------------------------------------------ the detail and overrides

    def action_next_version(self) -> None:
        if self.detail is None:
            return
        kinds = self.detail.reflected_kinds()
        if len(kinds) > 1 and self.kind in kinds:
            self.kind = kinds[(kinds.index(self.kind) + 1) % len(kinds)]
            self.query_one(SampleView).show(self.detail, self.kind)

    def action_override(self, value: str) -> None:
        if self.detail is None:
            self.notify("Highlight a sample first.", severity="warning")
            return
        self.write_override(self.detail.run_id, self.detail.sample_id, value or None)

    @work(thread=True, group="browse-override", exit_on_error=False)
    def write_override(self, run_id: int, sample_id: int, value: str | None) -> None:
        set_override(self.ctx.store, run_id, sample_id, value)
        effect = {
            "accept": "accepted: export includes it",
            "reject": "rejected: export leaves it out",
        }.get(value or "", "back to the student's decision")
        self.from_thread(self.notify, f"sample {sample_id} {effect}")
        self.from_thread(self.reload, True)
        detail = sample_detail(self.ctx.store, run_id, sample_id)
        self.from_thread(self._show_detail, detail)
