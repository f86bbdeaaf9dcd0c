"""SQL: an editor, the tables and their columns, results in a fast table, errors inline; read-only.

Queries run through srt_local.readonly_sql, as `srt sql` does: the app holds the store read-write,
so they run on a sandboxed snapshot of it, where DuckDB itself refuses anything that writes.
"""

from __future__ import annotations

from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import TextArea, Tree

from srt_local.readonly_sql import LiveReader, SqlError, SqlResult
from srt_local.store import Store
from tui.screens.base import Pane
from tui.widgets.arrow_table import ArrowTable
from tui.widgets.status_line import Kind, StatusLine

ROW_CAP = 1000
EXAMPLE = """SELECT branch, count(*) AS n,
       count(*) FILTER (WHERE emitted) AS emitted
FROM decisions
GROUP BY branch
ORDER BY n DESC, branch;
"""


def schema(store: Store) -> dict[str, list[tuple[str, str]]]:
    """Every table and view of the store with its columns and types, in definition order."""
    tables: dict[str, list[tuple[str, str]]] = {}
    for table, column, kind in store.query(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'main' ORDER BY table_name, ordinal_position"
    ):
        tables.setdefault(str(table), []).append((str(column), str(kind)))
    return tables


class SqlPane(Pane):
    """Tables and columns on the left; the editor, the outcome and the results on the right."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r,f5", "run_query", "Run query"),
        Binding("ctrl+l", "clear", "Clear editor", show=False),
    ]

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Tree("store", id="schema")
            with Vertical(id="sql-main"):
                yield TextArea(EXAMPLE, id="editor", show_line_numbers=False, tab_behavior="indent")
                yield StatusLine(
                    "ctrl+r runs the query (read only) · enter on a table or column "
                    "inserts its name",
                    id="sql-status",
                )
                yield ArrowTable("results appear here", id="results")

    def on_mount(self) -> None:
        self.reader = LiveReader(self.ctx.store)
        self.query_one("#schema", Tree).show_root = False
        self.load_schema()

    def on_unmount(self) -> None:
        self.reader.close()

    def activated(self) -> None:
        self.load_schema()

    def focus_main(self) -> None:
        self.query_one("#editor", TextArea).focus()

    @work(thread=True, group="sql-schema", exclusive=True, exit_on_error=False)
    def load_schema(self) -> None:
        tables = schema(self.ctx.store)
        self.from_thread(self._show_schema, tables)

    def _show_schema(self, tables: dict[str, list[tuple[str, str]]]) -> None:
        tree: Tree[str] = self.query_one("#schema", Tree)
        expanded = {n.data for n in tree.root.children if n.is_expanded}
        tree.clear()
        for name, columns in tables.items():
            node = tree.root.add(name, data=name, expand=name in expanded)
            for column, kind in columns:
                node.add_leaf(f"{column} [dim]{kind.lower()}[/]", data=column)

    @on(Tree.NodeSelected, "#schema")
    def insert_name(self, event: Tree.NodeSelected[str]) -> None:
        if event.node.data:
            self.query_one("#editor", TextArea).insert(event.node.data)

    def action_clear(self) -> None:
        editor = self.query_one("#editor", TextArea)
        editor.clear()
        editor.focus()

    def action_run_query(self) -> None:
        sql = self.query_one("#editor", TextArea).text
        self.set_status("running…")
        self.execute(sql)

    def set_status(self, text: str, kind: Kind = "") -> None:
        self.query_one("#sql-status", StatusLine).set(text, kind)

    @work(thread=True, group="sql-run", exclusive=True, exit_on_error=False)
    def execute(self, sql: str) -> None:
        try:
            result = self.reader.run(sql, cap=ROW_CAP)
        except SqlError as exc:
            self.from_thread(self.set_status, str(exc), "error")
            return
        self.from_thread(self._show_result, result)

    async def _show_result(self, result: SqlResult) -> None:
        n = result.shown
        caption = (
            f"{result.total:,} row{'' if result.total == 1 else 's'}"
            if n >= result.total
            else f"showing {n:,} of {result.total:,} rows"
        )
        self.set_status(caption, "ok")
        await self.query_one("#results", ArrowTable).show(
            result.arrow_table(), empty="the query returned no rows"
        )
