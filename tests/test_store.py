"""The store: migrations recorded once, one writer at a time with a clear message, snapshots."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from srt_local.migrations import MIGRATIONS
from srt_local.store import Store, StoreBusyError, StoreError


def test_migrations_apply_once(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    with Store.open(db) as store:
        names = [r[0] for r in store.query("SELECT name FROM _migrations ORDER BY name")]
    assert names == [name for name, _ in MIGRATIONS]
    with Store.open(db) as store:
        again = store.query("SELECT count(*) FROM _migrations")[0][0]
    assert again == len(MIGRATIONS)


def test_transaction_rolls_back_whole(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        with pytest.raises(RuntimeError), store.transaction() as con:
            con.execute("INSERT INTO import_errors VALUES (1, 'line 1', 'x', 'bad', NULL)")
            raise RuntimeError("crash in the middle")
        assert store.query("SELECT count(*) FROM import_errors")[0][0] == 0


def test_read_only_refuses_writes_and_missing_files(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    with pytest.raises(StoreError, match="no store here yet"):
        Store.open(db, read_only=True)
    Store.open(db).close()
    with Store.open(db, read_only=True) as store, pytest.raises(Exception, match="read-only"):
        store.execute("DELETE FROM samples")


def test_second_writer_gets_a_message_naming_what_to_do(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    Store.open(db).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from srt_local.store import Store; import time; s = Store.open(__import__('pathlib').Path({str(db)!r}));"
            "print('ready', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreBusyError) as err:
            Store.open(db, read_only=True)
        message = str(err.value)
        assert str(db) in message and "srt sql --snapshot" in message
        assert f"PID {holder.pid}" in message
        with Store.open_snapshot(db) as snap:
            assert snap.query("SELECT count(*) FROM _migrations")[0][0] == len(MIGRATIONS)
            snapshot_dir = snap.snapshot_dir
        assert snapshot_dir is not None and not snapshot_dir.exists()
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    Store.open(db).close()
