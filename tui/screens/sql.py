"""SQL: an editor, the tables and their columns, results in a fast table, errors inline; read-only.

The editor highlights SQL and completes table and column names; ctrl+up/down walk the history
(kept in the data folder between sessions). On the results, enter shows a whole cell, c copies it,
y copies the row, ctrl+s writes every row of the result to a file (CSV, JSON, JSON Lines, Parquet).

The app holds the store read-write (DuckDB allows one writer per file), so queries run on a
sandboxed copy of it (srt_local.readonly_sql.LiveReader): read-only, external access off and
settings locked, enforced by DuckDB itself, exactly as `srt sql` runs them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import OptionList, Tree
from textual.widgets.option_list import Option
from textual.worker import get_current_worker

from srt_local import paths
from srt_local.readonly_sql import LiveReader, SqlError, SqlResult
from srt_local.result_files import ResultFileError, write_result
from srt_local.store import Store
from srt_local.textsafe import visible
from tui.screens.base import Pane
from tui.widgets.arrow_table import ArrowTable
from tui.widgets.ask_path import AskPath
from tui.widgets.cell_view import CellView, cell_text
from tui.widgets.confirm import Confirm
from tui.widgets.sql_editor import SqlEditor
from tui.widgets.status_line import Kind, StatusLine

if TYPE_CHECKING:
    from textual_fastdatatable import DataTable

ROW_CAP = 1000
HISTORY_KEPT = 200
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


def history_file() -> Path:
    return paths.data_dir() / "sql_history.jsonl"


def load_history() -> list[str]:
    """The queries run in earlier sessions, oldest first (none if the file is unreadable)."""
    try:
        lines = history_file().read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    queries = []
    for line in lines[-HISTORY_KEPT:]:
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, str):
            queries.append(value)
    return queries


def save_history(queries: list[str]) -> None:
    path = history_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in queries[-HISTORY_KEPT:])
        path.write_text(text, "utf-8")
    except OSError:
        pass  # a history that cannot be kept must not stop the queries


class SqlPane(Pane):
    """Tables and columns on the left; the editor, the outcome and the results on the right."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r,f5", "run_query", "Run query"),
        Binding("ctrl+s", "export_results", "Export results"),
        Binding("ctrl+l", "clear", "Clear editor", show=False),
        Binding("c", "copy_cell", "Copy cell", show=False),
        Binding("y", "copy_row", "Copy row", show=False),
    ]
    HELP = (
        "In the editor: tab or ctrl+space completes a table or column name (up/down choose, "
        "enter takes one), ctrl+up and ctrl+down walk the history of queries run. "
        "On the results: enter shows the whole cell. Everything runs read only."
    )

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Tree("store", id="schema")
            with Vertical(id="sql-main"):
                yield SqlEditor(EXAMPLE, id="editor")
                yield OptionList(id="completions", markup=False)
                yield StatusLine(
                    "ctrl+r runs the query (read only) · tab completes names · "
                    "ctrl+up/down: history",
                    id="sql-status",
                )
                yield ArrowTable("results appear here", cursor_type="cell", id="results")

    def on_mount(self) -> None:
        self.query_one("#schema", Tree).show_root = False
        self.query_one("#completions", OptionList).display = False
        self.last_sql: str | None = None
        self.watch(self.app, "theme", self._theme_changed)
        self.load_history()
        self.reader = LiveReader(self.ctx.store)

    def on_unmount(self) -> None:
        self.reader.close()

    def activated(self) -> None:
        self.load_schema()

    def focus_main(self) -> None:
        self.query_one("#editor", SqlEditor).focus()

    def _theme_changed(self, _theme: str) -> None:
        self.query_one("#editor", SqlEditor).theme = (
            "monokai" if self.app.current_theme.dark else "github_light"
        )

    @work(thread=True, group="sql-schema", exclusive=True, exit_on_error=False)
    def load_schema(self) -> None:
        tables = schema(self.ctx.store)
        self.from_thread(self._show_schema, tables)

    def _show_schema(self, tables: dict[str, list[tuple[str, str]]]) -> None:
        self.query_one("#editor", SqlEditor).schema = {
            name: [c for c, _ in columns] for name, columns in tables.items()
        }
        tree: Tree[str] = self.query_one("#schema", Tree)
        expanded = {n.data for n in tree.root.children if n.is_expanded}
        tree.clear()
        for name, columns in tables.items():
            node = tree.root.add(
                Text(visible(name, one_line=True)), data=name, expand=name in expanded
            )
            for column, kind in columns:
                label = Text.assemble(visible(column, one_line=True), (f" {kind.lower()}", "dim"))
                node.add_leaf(label, data=column)

    @work(thread=True, group="sql-history", exit_on_error=False)
    def load_history(self) -> None:
        queries = load_history()
        self.from_thread(self._history_loaded, queries)

    def _history_loaded(self, queries: list[str]) -> None:
        editor = self.query_one("#editor", SqlEditor)
        editor.queries = queries + editor.queries

    @on(Tree.NodeSelected, "#schema")
    def insert_name(self, event: Tree.NodeSelected[str]) -> None:
        if event.node.data:
            self.query_one("#editor", SqlEditor).insert(event.node.data)

    # ------------------------------------------------------------ completion list

    @on(SqlEditor.Completions)
    def show_completions(self, message: SqlEditor.Completions) -> None:
        shown = self.query_one("#completions", OptionList)
        shown.clear_options()
        shown.display = bool(message.names)
        if message.names:
            shown.add_options(Option(visible(n, one_line=True)) for n in message.names)
            shown.highlighted = message.chosen

    @on(OptionList.OptionSelected, "#completions")
    def completion_clicked(self, event: OptionList.OptionSelected) -> None:
        editor = self.query_one("#editor", SqlEditor)
        editor.chosen = event.option_index
        editor.accept()
        editor.focus()

    # ------------------------------------------------------------ running

    def action_clear(self) -> None:
        editor = self.query_one("#editor", SqlEditor)
        editor.clear()
        editor.focus()

    def action_run_query(self) -> None:
        editor = self.query_one("#editor", SqlEditor)
        sql = editor.text
        editor.remember(sql)
        self.keep_history(list(editor.queries))
        self.set_status("running…")
        self.execute(sql)

    @work(thread=True, group="sql-history-save", exclusive=True, exit_on_error=False)
    def keep_history(self, queries: list[str]) -> None:
        save_history(queries)

    def set_status(self, text: str, kind: Kind = "") -> None:
        self.query_one("#sql-status", StatusLine).set(text, kind)

    @work(thread=True, group="sql-run", exclusive=True, exit_on_error=False)
    def execute(self, sql: str) -> None:
        try:
            result = self.reader.run(sql, cap=ROW_CAP)
        except SqlError as exc:
            self.from_thread(self.set_status, str(exc), "error")
            return
        if not get_current_worker().is_cancelled:
            self.last_sql = sql
            self.from_thread(self._show_result, result)

    async def _show_result(self, result: SqlResult) -> None:
        n = result.shown
        caption = (
            f"{result.total:,} row{'' if result.total == 1 else 's'}"
            if n >= result.total
            else f"showing {n:,} of {result.total:,} rows"
        )
        if n:
            caption += " · enter: whole cell · c/y: copy cell/row · ctrl+s: export"
        self.set_status(caption, "ok")
        await self.query_one("#results", ArrowTable).show(
            result.arrow_table(), empty="the query returned no rows"
        )

    # ------------------------------------------------------------ the results

    def on_data_table_cell_selected(self, event: DataTable.CellSelected) -> None:
        cell = self.query_one("#results", ArrowTable).cell()
        if cell is not None:
            self.app.push_screen(CellView(*cell))

    def action_copy_cell(self) -> None:
        cell = self.query_one("#results", ArrowTable).cell()
        if cell is None:
            self.notify("No cell to copy: run a query first.", severity="warning")
            return
        self.app.copy_to_clipboard(cell_text(cell[1]))
        self.notify(f"copied the cell of {cell[0]}")

    def action_copy_row(self) -> None:
        results = self.query_one("#results", ArrowTable)
        cell, data = results.cell(), results.data
        table = results.table
        if cell is None or data is None or table is None:
            self.notify("No row to copy: run a query first.", severity="warning")
            return
        row = data.slice(table.cursor_coordinate.row, 1).to_pylist()[0]
        self.app.copy_to_clipboard("\t".join(cell_text(v) for v in row.values()))
        self.notify("copied the row (tab-separated)")

    @work(group="sql-export", exclusive=True, exit_on_error=False)
    async def action_export_results(self) -> None:
        """Ask for a file, then write every row of the last query's result to it."""
        if self.last_sql is None:
            self.set_status(
                "Run a query first (ctrl+r); its result is what gets exported.", "warning"
            )
            return
        path = await self.app.push_screen_wait(
            AskPath(
                "Write the result (every row) to which file? The suffix chooses the format: "
                ".csv, .json, .jsonl or .parquet.",
                "result.csv",
            )
        )
        if path is None:
            return
        overwrite = False
        if path.exists() and not path.is_dir():
            overwrite = await self.app.push_screen_wait(
                Confirm(f"{path} exists. Replace it?", yes="Replace", no="Keep it")
            )
            if not overwrite:
                return
        self.set_status(f"writing {path}…")
        self.write_results(self.last_sql, path.resolve(), overwrite)

    @work(thread=True, group="sql-write", exclusive=True, exit_on_error=False)
    def write_results(self, sql: str, path: Path, overwrite: bool) -> None:
        try:
            result = self.reader.run(sql)
            n = write_result(result.arrow_table(), path, overwrite=overwrite)
        except (SqlError, ResultFileError) as exc:
            self.from_thread(self.set_status, str(exc), "error")
            return
        self.from_thread(self.set_status, f"wrote {n:,} rows to {path}", "ok")
