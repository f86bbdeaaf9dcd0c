"""Names, server errors and paths are data in the CLI's output, never Rich markup; `srt status`
reads a store that a run holds."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from srt_local.run.repository import RunRecords
from srt_local.run.vocabulary import RunStatus
from tests.tui_support import build_store

HOSTILE = "[/INST] [bold]x :x:"


def srt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "srt_local.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_an_imported_name_with_brackets_is_printed_as_it_is(tmp_path: Path) -> None:
    data = tmp_path / "data[bold].json"
    data.write_text(json.dumps([{"instruction": "a b c", "input": "", "output": "d e f"}]))
    db = str(tmp_path / "s.duckdb")
    out = srt("import", str(data), "--name", HOSTILE, "--db", db)
    assert out.returncode == 0, out.stderr
    assert HOSTILE in out.stdout and "Traceback" not in out.stderr
    again = srt("import", str(data), "--name", HOSTILE, "--db", db)
    assert again.returncode == 0, again.stderr
    assert f"{data}: already imported as dataset {HOSTILE!r}" in again.stderr


def test_status_prints_a_pause_cause_with_brackets(tmp_path: Path) -> None:
    store, run_id = build_store(tmp_path)
    cause = f"run {run_id} paused: llama runner crashed {HOSTILE} (HTTP 500)"
    RunRecords(store).set_status(run_id, RunStatus.PAUSED, cause)
    store.close()
    out = srt("status", "--db", str(tmp_path / "srt.duckdb"))
    assert out.returncode == 0, out.stderr
    assert cause in " ".join(out.stdout.split()) and "Traceback" not in out.stderr


def test_status_reads_a_store_another_process_holds(tmp_path: Path) -> None:
    store, run_id = build_store(tmp_path)
    store.close()
    db = tmp_path / "srt.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom srt_local.store import Store\n"
            f"s = Store.open(__import__('pathlib').Path({str(db)!r}))\n"
            "print('held', flush=True)\ntime.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        start = time.monotonic()
        out = srt("status", "--db", str(db))
        assert out.returncode == 0, out.stderr
        assert f"run {run_id} on tiny: done" in out.stdout and "snapshot" in out.stderr
        assert time.monotonic() - start < 60
    finally:
        holder.kill()
        holder.wait()
