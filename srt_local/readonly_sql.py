"""Read-only SQL on the store: the one implementation behind `srt sql` and the TUI's SQL tab.

Read-only is enforced by DuckDB, not by reading the statements: every query runs on a sandboxed
store (Store.open(..., sandboxed=True), or a snapshot copy, sandboxed as well), a read-only
connection with external access off and the configuration locked. DuckDB then refuses every write
to the store, every file outside it (COPY ... TO, EXPORT DATABASE, ATTACH, read_csv, the live
store's own path from a snapshot), INSTALL and LOAD of extensions, and every SET or PRAGMA that
changes a setting, EXPLAIN ANALYZE of any of these included. A statement classifier would have to
track everything DuckDB can do and would drift; this module only names what was refused and why,
in one line that the CLI and the TUI show alike.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from srt_local.errors import SrtError
from srt_local.store import Store


class SqlError(SrtError):
    """The query failed: it is empty, or DuckDB could not parse, bind or run it."""


class SqlRefused(SqlError):
    """The query tried to write: the store, a file, a setting or an extension."""


@dataclass(frozen=True)
class SqlResult:
    """What the last statement returned: its columns, at most `cap` of its rows, and how many it
    returned in all. The rows come as an Arrow table (`arrow=True`, for a table widget) or as
    DuckDB's own Python values (for printing and JSON, exactly as DuckDB gives them)."""

    columns: list[str]
    total: int
    table: pa.Table | None = None
    values: list[tuple[Any, ...]] = field(default_factory=list)

    @property
    def shown(self) -> int:
        return self.table.num_rows if self.table is not None else len(self.values)

    @property
    def truncated(self) -> bool:
        return self.shown < self.total

    def arrow_table(self) -> pa.Table:
        if self.table is not None:
            return self.table
        columns = list(zip(*self.values, strict=True)) or [() for _ in self.columns]
        return pa.Table.from_arrays([pa.array(list(c)) for c in columns], names=self.columns)

    def rows(self) -> list[tuple[Any, ...]]:
        if self.table is None:
            return self.values
        # By column: to_pylist() makes dicts, which would fold columns of the same name.
        return list(zip(*(column.to_pylist() for column in self.table.columns), strict=True))


def open_reader(path: Path | None = None, snapshot: bool = False) -> Store:
    """The store opened for user SQL (sandboxed); with `snapshot`, a sandboxed copy taken now,
    which works while another process writes the store."""
    return Store.open_snapshot(path) if snapshot else Store.open(path, sandboxed=True)


def run_sql(store: Store, sql: str, cap: int | None = None, arrow: bool = False) -> SqlResult:
    """Run every statement of `sql` on a sandboxed `store`; the result of the last one.

    Raises SqlRefused for anything that would write, SqlError for any other failure.
    """
    if not store.sandboxed:
        raise SqlError(f"{store.path}: user SQL runs on a sandboxed store only (open_reader)")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise SqlError(f"SQL error: {_one_line(str(exc))}") from None
    if not statements:
        raise SqlError("nothing to run: the query is empty")
    with store.cursor() as cur:
        for st in statements[:-1]:
            _run(cur, st, None, arrow)
        return _run(cur, statements[-1], cap, arrow)


def _run(
    cur: duckdb.DuckDBPyConnection, st: duckdb.Statement, cap: int | None, arrow: bool
) -> SqlResult:
    try:
        rel = cur.sql(st.query)
        if rel is None:  # a statement with no result (BEGIN, SET VARIABLE...)
            return SqlResult([], 0)
        columns = list(rel.columns)
        if cap is not None and st.type == duckdb.StatementType.SELECT:
            # Counted in DuckDB; only the rows shown are fetched.
            total = int(rel.count("*").fetchall()[0][0])
            rel = rel.limit(cap)
        else:
            total = -1
        if arrow:
            table = rel.to_arrow_table()
            total = table.num_rows if total < 0 else total
            return SqlResult(columns, total, table=table.slice(0, cap) if cap else table)
        values = rel.fetchall()
    except duckdb.Error as exc:
        raise _explain(st, exc) from None
    total = len(values) if total < 0 else total
    return SqlResult(columns, total, values=values[:cap] if cap else values)


# What DuckDB says when the sandbox stops a statement, and the reason we give for it.
_REFUSALS = (
    ("read-only mode", "it would change the store"),
    ("configuration has been locked", "it changes a setting, and settings are locked"),
    ("external extensions", "it loads an extension"),
    ("file system operations are disabled", "it reads or writes a file outside the store"),
    ("belongs to an attached database", "it would overwrite the store's own file"),
)


def _explain(st: duckdb.Statement, exc: duckdb.Error) -> SqlError:
    message = _one_line(str(exc))
    for mark, why in _REFUSALS:
        if mark in message:
            words = st.query.split(None, 1)
            kind = words[0].upper() if words else st.type.name
            return SqlRefused(f"read-only: {kind} refused, {why} ({_snippet(st.query)})")
    return SqlError(f"SQL error: {message}")


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _snippet(query: str, width: int = 60) -> str:
    text = _one_line(query)
    return text if len(text) <= width else text[: width - 1] + "…"


class LiveReader:
    """User SQL on a store this process holds read-write (the TUI's), through a sandboxed snapshot.

    DuckDB opens a file with one configuration per process, so the sandbox is a copy; it is taken
    again only when the store's file changed since the last one.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._snapshot: Store | None = None
        self._stamp: tuple[int, int] | None = None

    def run(self, sql: str, cap: int | None = None) -> SqlResult:
        """The result as an Arrow table (for the app's table widget)."""
        with self._lock:
            stamp = self._store.checkpoint()
            if self._snapshot is None or stamp != self._stamp:
                self.close_snapshot()
                self._snapshot = self._store.snapshot()
                self._stamp = stamp
            return run_sql(self._snapshot, sql, cap, arrow=True)

    def close_snapshot(self) -> None:
        if self._snapshot is not None:
            self._snapshot.close()
            self._snapshot = None

    def close(self) -> None:
        with self._lock:
            self.close_snapshot()
