"""Which process runs a run, so that a run whose process is gone shows as interrupted.

A run is `running` from its start to its end; kill -9, SIGKILL by the OOM killer or a lost machine
leave it so. Each run records the PID and host of the process executing it. DuckDB lets one process
hold a store for writing, so a process that opens the store for a run knows every other `running`
run is orphaned; a reader checks the PID when it is on the same host.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from srt_local.run.vocabulary import RunStatus
from srt_local.store import Store

# Shown, never stored: a run left `running` by a process that is gone.
INTERRUPTED = "interrupted"


def this_host() -> str:
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    """Whether a process of this PID exists on this host (signal 0 checks without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    except OSError:
        return False
    return True


def claim(store: Store, run_id: int) -> None:
    """Record this process as the run's owner, and pause every other run left `running` by a
    process that is gone (this process holds the store, so none of them can still be writing)."""
    pid, host = os.getpid(), this_host()
    with store.transaction() as con:
        con.execute(
            "UPDATE runs SET status = ?, updated_at = current_timestamp "
            "WHERE status = ? AND run_id <> ? "
            "AND (owner_pid IS DISTINCT FROM ? OR owner_host IS DISTINCT FROM ?)",
            [RunStatus.PAUSED, RunStatus.RUNNING, run_id, pid, host],
        )
        con.execute(
            "UPDATE runs SET owner_pid = ?, owner_host = ? WHERE run_id = ?", [pid, host, run_id]
        )


def shown_status(run: dict[str, Any], store_is_held: bool) -> str:
    """The status to show for a stored run row: `interrupted` for a run left `running` by a
    process that is gone. `store_is_held`: another process holds the store (the reader took a
    snapshot); when nobody holds it, no run can be running at all."""
    status = str(run["status"])
    if status != RunStatus.RUNNING:
        return status
    if not store_is_held:
        return INTERRUPTED
    pid, host = run.get("owner_pid"), run.get("owner_host")
    if pid is not None and host == this_host() and not pid_alive(int(pid)):
        return INTERRUPTED
    return status
