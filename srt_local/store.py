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
from srt_local.errors import SrtError
from srt_local.migrations import MIGRATIONS

if TYPE_CHECKING:
    import pyarrow as pa

_relation_names = itertools.count()


class StoreError(SrtError, RuntimeError):
    """The store cannot be opened or used."""


class StoreBusyError(StoreError):
    """Another process holds the store file for writing."""


# A connection opened with these reads the store and nothing else: DuckDB itself refuses every write
# to the file (read_only), every other file (COPY ... TO, EXPORT DATABASE, ATTACH, read_csv,
# INSTALL), extension loading, and every change of a setting, this one included.
SANDBOX_CONFIG = {
    "enable_external_access": "false",
    "autoinstall_known_extensions": "false",
    "autoload_known_extensions": "false",
    "allow_community_extensions": "false",
    "lock_configuration": "true",
}


class Store:
    """A DuckDB connection with the schema migrated and a lock for use from several threads.

    The connection and the lock are private: every use goes through the methods below, so a
    statement never runs outside the lock and a unit of work never runs outside a transaction.
    """

    def __init__(
        self, path: Path, con: duckdb.DuckDBPyConnection, read_only: bool, sandboxed: bool = False
    ) -> None:
        self.path = path
        self._con = con
        self.read_only = read_only
        self.sandboxed = sandboxed
        self._lock = threading.RLock()
        self.snapshot_dir: Path | None = None

    @classmethod
    def open(
        cls, path: Path | None = None, read_only: bool = False, sandboxed: bool = False
    ) -> Store:
        """Open (and create or migrate) the store; `path` defaults to the data dir's srt.duckdb.

        `sandboxed` (implies read-only) opens it with SANDBOX_CONFIG: nothing but reading the store.
        """
        path = path or paths.default_db_path()
        read_only = read_only or sandboxed
        if read_only and not path.exists():
            raise StoreError(f"{path}: no store here yet (run `srt import` or `srt demo` first)")
        check_store_file(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = duckdb.connect(
                str(path), read_only=read_only, config=dict(SANDBOX_CONFIG) if sandboxed else {}
            )
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise StoreBusyError(busy_message(path, exc)) from None
            raise StoreError(f"{path}: cannot open the store: {exc}{_io_fix(exc)}") from None
        except duckdb.ConnectionException as exc:
            # This process holds the file already, opened otherwise (the TUI holds it read-write).
            raise StoreBusyError(
                f"{path} is open in this process already ({exc}); read a snapshot of it instead"
            ) from None
        store = cls(path, con, read_only, sandboxed)
        if not read_only:
            store.migrate()
        return store

    @classmethod
    def open_snapshot(cls, path: Path | None = None) -> Store:
        """A private, sandboxed copy of the store taken now, for reading while another process
        writes it. Sandboxed, so no statement on the copy can write a file (the original included).
        """
        path = path or paths.default_db_path()
        if not path.exists():
            raise StoreError(f"{path}: no store here yet (run `srt import` or `srt demo` first)")
        check_store_file(path)
        folder = Path(tempfile.mkdtemp(prefix="srt-snapshot-"))
        copy = folder / path.name
        shutil.copy2(path, copy)
        wal = path.with_name(path.name + ".wal")
        if wal.exists():
            shutil.copy2(wal, copy.with_name(copy.name + ".wal"))
        return cls._open_copy(path, folder, copy)

    def snapshot(self) -> Store:
        """A sandboxed copy of this (open) store, for reading it with SQL a user typed.

        DuckDB lets one process open a file with one configuration only, so a process that holds
        the store read-write reads a copy: checkpointed first, so the file alone is complete.
        """
        folder = Path(tempfile.mkdtemp(prefix="srt-snapshot-"))
        copy = folder / self.path.name
        with self._lock:
            if not self.read_only:
                self._con.execute("CHECKPOINT")
            shutil.copy2(self.path, copy)
            wal = self.path.with_name(self.path.name + ".wal")
            if wal.exists():
                shutil.copy2(wal, copy.with_name(copy.name + ".wal"))
        return self._open_copy(self.path, folder, copy)

    def checkpoint(self) -> tuple[int, int]:
        """Write the WAL into the file (when writable); then the file's (size, mtime in ns), which
        change whenever the store does."""
        with self._lock:
            if not self.read_only:
                self._con.execute("CHECKPOINT")
            stat = self.path.stat()
        return stat.st_size, stat.st_mtime_ns

    @classmethod
    def _open_copy(cls, original: Path, folder: Path, copy: Path) -> Store:
        try:
            # Opening for writing replays the copied WAL; the copy is then read like the original.
            duckdb.connect(str(copy)).close()
            con = duckdb.connect(str(copy), read_only=True, config=dict(SANDBOX_CONFIG))
        except duckdb.Error as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise StoreError(
                f"{original}: the copy was taken mid-write ({exc}); try again"
            ) from None
        store = cls(copy, con, read_only=True, sandboxed=True)
        store.snapshot_dir = folder
        return store

    def close(self) -> None:
        with self._lock:
            self._con.close()
        if self.snapshot_dir is not None:
            shutil.rmtree(self.snapshot_dir, ignore_errors=True)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def migrate(self) -> None:
        with self._lock:
            self._con.execute(
                "CREATE TABLE IF NOT EXISTS _migrations (name VARCHAR PRIMARY KEY, "
                "applied_at TIMESTAMP DEFAULT current_timestamp)"
            )
            done = {row[0] for row in self._con.execute("SELECT name FROM _migrations").fetchall()}
            for name, sql in MIGRATIONS:
                if name in done:
                    continue
                with self.transaction() as con:
                    con.execute(sql)
                    con.execute("INSERT INTO _migrations (name) VALUES (?)", [name])

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One unit of work: committed whole or not at all. The connection it yields is for this
        block only; the store's lock is held until the block ends."""
        with self._lock:
            self._con.execute("BEGIN TRANSACTION")
            try:
                yield self._con
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        """One statement, in its own transaction."""
        with self.transaction() as con:
            con.execute(sql, params or [])

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._con.execute(sql, params or []).fetchall()

    def query_dicts(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._con.execute(sql, params or [])
            names = [d[0] for d in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def query_arrow(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        with self._lock:
            return self._con.sql(sql, params=params or None).to_arrow_table()

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor of its own (its own temporary objects and transaction), closed after the block.

        Only on a sandboxed store, for statements a user typed; the lock is held throughout.
        """
        if not self.sandboxed:
            raise StoreError(f"{self.path}: a cursor is given on a sandboxed store only")
        with self._lock:
            cur = self._con.cursor()
            try:
                yield cur
            finally:
                cur.close()

    def execute_with(
        self, sql: str, params: Sequence[Any] | None = None, **tables: pa.Table
    ) -> list[tuple[Any, ...]]:
        """Run `sql` with each Arrow table readable in it as `{keyword}` (braces included).

        For bulk writes (`INSERT ... SELECT ... FROM rows`, `UPDATE ... FROM rows`): one statement
        per batch of rows instead of one per row. Inside `transaction()` it joins that unit.
        """
        with self._lock:
            # Private names: a name left registered by an aborted transaction is never reused.
            names = {key: f"_{key}_{next(_relation_names)}" for key in tables}
            for key, table in tables.items():
                self._con.register(names[key], table)
            try:
                for key, unique in names.items():
                    sql = sql.replace(f"{{{key}}}", unique)
                return self._con.execute(sql, params or []).fetchall()
            finally:
                for unique in names.values():
                    # Fails in an aborted transaction (the rollback drops the view anyway); a
                    # failure here must not hide the error that aborted it.
                    with contextlib.suppress(duckdb.Error):
                        self._con.unregister(unique)

    @contextmanager
    def settings(self, **values: str) -> Iterator[None]:
        """DuckDB settings for a block of work (e.g. memory_limit="512MB"), put back after.

        Holds the store for the block, so no other thread's statement runs under them.
        """
        with self._lock:
            old: dict[str, str] = {}
            try:
                for name, value in values.items():
                    if not name.isidentifier():
                        raise ValueError(f"not a setting name: {name!r}")
                    row = self._con.execute("SELECT current_setting(?)", [name]).fetchone()
                    old[name] = str(row[0]) if row else ""
                    self._con.execute(f"SET {name} = '{_quote(value)}'")
                yield
            finally:
                for name, value in old.items():
                    self._con.execute(f"SET {name} = '{_quote(value)}'")

    def arrow_batches(
        self, sql: str, params: Sequence[Any] | None = None, rows: int = 10_000
    ) -> Iterator[pa.RecordBatch]:
        """The result of `sql` as Arrow record batches of about `rows` rows, read as consumed.

        Memory stays bounded by a batch whatever the result's size. The store is held for the
        whole iteration: consume it promptly, and run no other statement on this store from the
        loop.
        """
        with self._lock:
            relation = self._con.sql(sql, params=list(params or []))
            yield from relation.to_arrow_reader(rows)


def _quote(value: str) -> str:
    return value.replace("'", "''")


# Bytes 8-11 of every DuckDB database file.
_DUCKDB_MAGIC = b"DUCK"


def check_store_file(path: Path) -> None:
    """Refuse a --db that exists but is not a DuckDB file (a dataset given by mistake), before
    anything is opened or written."""
    if path.is_dir():
        raise StoreError(f"{path}: is a folder; --db takes a DuckDB file or a new path")
    if not path.exists():
        return
    try:
        with path.open("rb") as fh:
            head = fh.read(12)
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the store: {exc.strerror}{_io_fix(exc)}") from None
    if head[8:12] != _DUCKDB_MAGIC:
        raise StoreError(
            f"{path}: not a DuckDB store (an existing file of another kind); --db takes a store "
            "made by srt or a new path, and nothing was written"
        )


def _io_fix(exc: Exception) -> str:
    """What to do about an I/O error, when the cause is the machine's."""
    text = str(exc).lower()
    if "permission denied" in text or "read-only file system" in text:
        return (
            "; the folder is not writable: fix its permissions or point --db ($SRT_HOME) elsewhere"
        )
    if "no space left" in text:
        return "; the disk is full: free some space, then retry"
    return ""


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
