"""SQL: an editor, the tables and their columns, results in a fast table, errors inline; read-only.

The app holds the store read-write (DuckDB allows one writer per file), so read-only is enforced
twice: only reading statements are accepted, and they run on a separate cursor inside a
transaction that is always rolled back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

import duckdb
import pyarrow as pa
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import TextArea, Tree

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
READING = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN, duckdb.StatementType.PRAGMA}
# PRAGMAs that only report; the others change settings.
READING_PRAGMAS = (
    "table_info",
    "show",
    "show_tables",
    "show_tables_expanded",
    "database_list",
    "database_size",
    "storage_info",
    "version",
    "platform",
    "metadata_info",
    "functions",
    "collations",
    "user_agent",
)
# Functions that change state even inside a rolled-back transaction.
SIDE_EFFECTS = re.compile(r"\b(nextval|setval)\s*\(", re.IGNORECASE)


class ReadOnlyError(ValueError):
    """A statement that could change the store."""


@dataclass(frozen=True)
class QueryResult:
    table: pa.Table
    total: int  # rows the last statement returned, of which `table` holds at most ROW_CAP


def check_read_only(sql: str) -> list[duckdb.Statement]:
    """The statements of `sql`, if every one only reads; else ReadOnlyError naming the first."""
    statements = duckdb.extract_statements(sql)
    if not statements:
        raise ReadOnlyError("nothing to run")
    for st in statements:
        text = st.query.strip()
        first = text.split(None, 1)[0].upper() if text else ""
        if st.type not in READING:
            raise ReadOnlyError(
                f"read only: {first or st.type.name} statements are not allowed here (SELECT, "
                "WITH, FROM, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN and reporting PRAGMAs are)"
            )
        if st.type == duckdb.StatementType.PRAGMA:
            name = re.sub(r"^pragma\s+", "", text, flags=re.IGNORECASE).split("(")[0].strip()
            if "=" in text or name.lower() not in READING_PRAGMAS:
                raise ReadOnlyError(f"read only: PRAGMA {name} changes settings")
        if SIDE_EFFECTS.search(text):
            raise ReadOnlyError("read only: nextval()/setval() change a sequence")
    return statements


def run_read_only(store: Store, sql: str, cap: int = ROW_CAP) -> QueryResult:
    """Run reading SQL on its own cursor in a transaction that is rolled back; the last result."""
    statements = check_read_only(sql)
    with store.lock:
        cur = store.con.cursor()
    try:
        cur.execute("BEGIN TRANSACTION")
        try:
            for st in statements[:-1]:
                cur.execute(st.query)
            last = statements[-1]
            rel = cur.sql(last.query)
            if last.type == duckdb.StatementType.SELECT:
                total = int(rel.count("*").fetchall()[0][0])
                table = rel.limit(cap).to_arrow_table()
            else:
                table = rel.to_arrow_table()
                total = table.num_rows
                table = table.slice(0, cap)
        finally:
            cur.execute("ROLLBACK")
    finally:
        cur.close()
    return QueryResult(table, total)


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
        self.query_one("#schema", Tree).show_root = False
        self.load_schema()

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
            result = run_read_only(self.ctx.store, sql)
        except (ReadOnlyError, duckdb.Error) as exc:
            self.from_thread(self.set_status, str(exc), "error")
            return
        self.from_thread(self._show_result, result)

    async def _show_result(self, result: QueryResult) -> None:
        n = result.table.num_rows
        caption = (
            f"{result.total:,} row{'' if result.total == 1 else 's'}"
            if n >= result.total
            else f"showing {n:,} of {result.total:,} rows"
        )
        self.set_status(caption, "ok")
        await self.query_one("#results", ArrowTable).show(
            result.table, empty="the query returned no rows"
        )
