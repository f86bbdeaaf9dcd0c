"""The DuckDB store: one file holds datasets, teacher replies, versions, scores, runs and decisions.

Every unit of work is written in one transaction, so a crash loses at most the unit in flight.
DuckDB allows one writing process per file; a second gets StoreBusyError with what to do instead.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from srt_local import paths
from srt_local.migrations import MIGRATIONS

if TYPE_CHECKING:
    import pyarrow as pa

_relation_names = itertools.count()


class StoreError(RuntimeError):
    """The store cannot be opened or used."""


class StoreBusyError(StoreError):
    """Another process holds the store file for writing."""


class Store:
    """A DuckDB connection with the schema migrated and a lock for use from several threads."""

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection, read_only: bool) -> None:
        self.path = path
        self.con = con
        self.read_only = read_only
        self.lock = threading.RLock()
        self.snapshot_dir: Path | None = None

    @classmethod
    def open(cls, path: Path | None = None, read_only: bool = False) -> Store:
        """Open (and create or migrate) the store; `path` defaults to the data dir's srt.duckdb."""
        path = path or paths.default_db_path()
        if read_only and not path.exists():
            raise StoreError(f"{path}: no store here yet (run `srt import` or `srt demo` first)")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise StoreBusyError(busy_message(path, exc)) from None
            raise StoreError(f"{path}: cannot open the store: {exc}") from None
        store = cls(path, con, read_only)
        if not read_only:
            store.migrate()
        return store

    @classmethod
    def open_snapshot(cls, path: Path | None = None) -> Store:
        """A private copy of the store taken now, for reading while another process writes it."""
        path = path or paths.default_db_path()
        if not path.exists():
            raise StoreError(f"{path}: no store here yet (run `srt import` or `srt demo` first)")
        folder = Path(tempfile.mkdtemp(prefix="srt-snapshot-"))
        copy = folder / path.name
        shutil.copy2(path, copy)
        wal = path.with_name(path.name + ".wal")
        if wal.exists():
            shutil.copy2(wal, copy.with_name(copy.name + ".wal"))
        try:
            # Opening for writing replays the copied WAL; the copy is then read like the original.
            duckdb.connect(str(copy)).close()
            con = duckdb.connect(str(copy), read_only=True)
        except duckdb.Error as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise StoreError(f"{path}: the copy was taken mid-write ({exc}); try again") from None
        store = cls(copy, con, read_only=True)
        store.snapshot_dir = folder
        return store

    def close(self) -> None:
        with self.lock:
            self.con.close()
        if self.snapshot_dir is not None:
            shutil.rmtree(self.snapshot_dir, ignore_errors=True)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def migrate(self) -> None:
        with self.lock:
            self.con.execute(
                "CREATE TABLE IF NOT EXISTS _migrations (name VARCHAR PRIMARY KEY, "
                "applied_at TIMESTAMP DEFAULT current_timestamp)"
            )
            done = {row[0] for row in self.con.execute("SELECT name FROM _migrations").fetchall()}
            for name, sql in MIGRATIONS:
                if name in done:
                    continue
                with self.transaction():
                    self.con.execute(sql)
                    self.con.execute("INSERT INTO _migrations (name) VALUES (?)", [name])

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One unit of work: committed whole or not at all."""
        with self.lock:
            self.con.execute("BEGIN TRANSACTION")
            try:
                yield self.con
            except BaseException:
                self.con.execute("ROLLBACK")
                raise
            self.con.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        with self.lock:
            return self.con.execute(sql, params or []).fetchall()

    def query_dicts(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        with self.lock:
            cur = self.con.execute(sql, params or [])
            names = [d[0] for d in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def execute_with(
        self, sql: str, params: Sequence[Any] | None = None, **tables: pa.Table
    ) -> list[tuple[Any, ...]]:
        """Run `sql` with each Arrow table readable in it as `{keyword}` (braces included).

        For bulk writes (`INSERT ... SELECT ... FROM rows`, `UPDATE ... FROM rows`): one statement
        per batch of rows instead of one per row. Inside `transaction()` it joins that unit.
        """
        with self.lock:
            # Private names: a name left registered by an aborted transaction is never reused.
            names = {key: f"_{key}_{next(_relation_names)}" for key in tables}
            for key, table in tables.items():
                self.con.register(names[key], table)
            try:
                for key, unique in names.items():
                    sql = sql.replace(f"{{{key}}}", unique)
                return self.con.execute(sql, params or []).fetchall()
            finally:
                for unique in names.values():
                    # Fails in an aborted transaction (the rollback drops the view anyway); a
                    # failure here must not hide the error that aborted it.
                    with contextlib.suppress(duckdb.Error):
                        self.con.unregister(unique)

    @contextmanager
    def settings(self, **values: str) -> Iterator[None]:
        """DuckDB settings for a block of work (e.g. memory_limit="512MB"), put back after.

        Holds the store for the block, so no other thread's statement runs under them.
        """
        with self.lock:
            old: dict[str, str] = {}
            try:
                for name, value in values.items():
                    if not name.isidentifier():
                        raise ValueError(f"not a setting name: {name!r}")
                    row = self.con.execute("SELECT current_setting(?)", [name]).fetchone()
                    old[name] = str(row[0]) if row else ""
                    self.con.execute(f"SET {name} = '{_quote(value)}'")
                yield
            finally:
                for name, value in old.items():
                    self.con.execute(f"SET {name} = '{_quote(value)}'")

    def arrow_batches(
        self, sql: str, params: Sequence[Any] | None = None, rows: int = 10_000
    ) -> Iterator[pa.RecordBatch]:
        """The result of `sql` as Arrow record batches of about `rows` rows, read as consumed.

        Memory stays bounded by a batch whatever the result's size. The store is held for the
        whole iteration: consume it promptly, and run no other statement on this store from the
        loop.
        """
        with self.lock:
            relation = self.con.sql(sql, params=list(params or []))
            yield from relation.to_arrow_reader(rows)


def _quote(value: str) -> str:
    return value.replace("'", "''")


def busy_message(path: Path, exc: Exception | None = None) -> str:
    holder = ""
    if exc is not None and "PID" in str(exc):
        holder = " (PID " + str(exc).split("PID", 1)[1].split(")")[0].strip() + ")"
    return (
        f"{path} is in use by another process{holder}: an `srt run`, `srt import` or `srt tui`. "
        "DuckDB lets one process hold a store while it writes. To read it now, query a copy "
        f'taken at this moment: `srt sql --snapshot "SELECT ..." --db {path}`; to write, wait '
        "for that process to finish or stop it (Ctrl-C; a run resumes later)."
    )
