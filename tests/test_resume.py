"""Kill -9 `srt run` at several points of each stage, rerun it, and get the uninterrupted result.

The teacher is the Ollama-protocol test server (deterministic replies, a fixed latency); the student
is the real Gemma GGUF. Nothing stored may be lost or duplicated.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from srt_local.config import load_models
from srt_local.importer import import_dataset
from srt_local.pipeline import RunOptions, prepare_run, run_pipeline
from srt_local.store import Store
from tests.ollama_server import OllamaTestServer
from tests.pairs import SIX_PAIRS

PAIRS = SIX_PAIRS
N_CALLS = 2 * len(PAIRS)  # one instruction and one response reflection per sample


def _dataset(tmp: Path) -> Path:
    path = tmp / "six.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    return path


def _decisions(store: Store, run_id: int) -> list[tuple[object, ...]]:
    return store.query(
        "SELECT s.position, d.branch, d.emitted, d.passes, round(d.ifd_final, 4), "
        "round(d.rifd_final, 4) FROM decisions d JOIN samples s USING (sample_id) "
        "WHERE run_id = ? ORDER BY s.position",
        [run_id],
    )


def _srt_run(db: Path, server: OllamaTestServer) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OLLAMA_HOST": server.url}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "srt_local.cli",
            "run",
            "six",
            "--teacher",
            "ollama",
            "--db",
            str(db),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
def test_sigkill_at_any_point_then_rerun_equals_uninterrupted(
    tmp_path: Path, gemma_gguf: Path
) -> None:
    data = _dataset(tmp_path)
    with OllamaTestServer(latency=0.3) as server:
        os.environ["OLLAMA_HOST"] = server.url
        try:
            reference = Store.open(tmp_path / "reference.duckdb")
            import_dataset(reference, data, name="six")
            config = load_models()
            ref_run = prepare_run(reference, RunOptions(dataset="six", teacher="ollama"), config)
            assert run_pipeline(reference, ref_run, config).status == "done"
            expected = _decisions(reference, ref_run)
            reference.close()
        finally:
            os.environ.pop("OLLAMA_HOST", None)

        db = tmp_path / "killed.duckdb"
        with Store.open(db) as store:
            import_dataset(store, data, name="six")
        base = len(server.chat_requests)
        # Cumulative chat requests after which the process dies: during instruction reflection,
        # around the switch to response reflection, and late in the response stage. A last kill
        # lands in the student's scoring right after a start.
        kills = 0
        for point in (1, 4, 7, 10):
            proc = _srt_run(db, server)
            deadline = time.monotonic() + 120
            while (
                len(server.chat_requests) - base < point
                and proc.poll() is None
                and time.monotonic() < deadline
            ):
                time.sleep(0.01)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait()
        proc = _srt_run(db, server)
        time.sleep(1.5)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        assert kills >= 3, "the kills must land while the run is working"

        final = _srt_run(db, server)
        _out, err = final.communicate(timeout=300)
        assert final.returncode == 0, err.decode()

    with Store.open(db, read_only=True) as store:
        run_ids = [r[0] for r in store.query("SELECT run_id FROM runs")]
        assert len(run_ids) == 1, "every rerun resumed the same run"
        run_id = run_ids[0]
        assert store.query("SELECT status FROM runs")[0][0] == "done"
        assert _decisions(store, run_id) == expected
        # No duplicated rows, no lost reply.
        n_samples = len(PAIRS)
        assert store.query("SELECT count(*) FROM decisions")[0][0] == n_samples
        assert store.query("SELECT count(*) FROM versions WHERE kind = 'ori'")[0][0] == n_samples
        assert store.query("SELECT count(*) FROM versions WHERE kind = 'Q'")[0][0] == n_samples
        assert (
            store.query("SELECT count(*) FROM versions WHERE kind IN ('A', 'QA')")[0][0]
            == n_samples
        )
        ok_calls = store.query(
            "SELECT sample_id, stage, count(*) FROM teacher_calls WHERE outcome = 'ok' "
            "GROUP BY ALL HAVING count(*) > 1"
        )
        assert ok_calls == [], "a stored reply was made twice"
        lost = store.query(
            "SELECT count(*) FROM teacher_calls c WHERE outcome = 'ok' AND NOT EXISTS "
            "(SELECT 1 FROM versions v WHERE v.call_id = c.call_id)"
        )[0][0]
        assert lost == 0, "a stored reply has no version"
        # Each sample's instruction and response were answered by exactly one stored reply.
        replies = store.query(
            "SELECT sample_id, stage, count(*) FROM teacher_calls WHERE outcome = 'ok' "
            "GROUP BY ALL ORDER BY ALL"
        )
        assert len(replies) == N_CALLS and all(n == 1 for _, _, n in replies)
        # Every version a decision stands on was scored by the run's student.
        unscored = store.query(
            "SELECT count(*) FROM versions v JOIN runs r ON true WHERE NOT EXISTS "
            "(SELECT 1 FROM scores s WHERE s.pair_hash = v.pair_hash "
            "AND s.student_sha256 = r.student_sha256)"
        )[0][0]
        assert unscored == 0
    # Every reply the server sent and the store kept was asked for once; at most the calls in
    # flight at each kill were asked again.
    assert len(server.chat_requests) - base <= N_CALLS + kills * 2 * 2
