"""A run's state read back from the store: per-stage counts, failures by kind, throughput, ETA."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from srt_local.run.vocabulary import STORED_STAGES, Kind, Stage
from srt_local.run.vocabulary import RunStatus as Status
from srt_local.store import Store


@dataclass
class RunStatus:
    run_id: int
    dataset: str
    status: str
    teacher: str
    student: str
    samples: int
    stages: dict[str, int]
    failures: dict[str, int] = field(default_factory=dict)
    kept: int = 0
    by_branch: dict[str, int] = field(default_factory=dict)
    teacher_calls: int = 0
    decisions_per_min: float | None = None
    eta_s: float | None = None
    error: str | None = None


def list_runs(store: Store) -> list[dict[str, Any]]:
    return store.query_dicts(
        "SELECT r.run_id, d.name AS dataset, r.status, r.teacher_name, r.student_name, "
        "r.created_at, (SELECT count(*) FROM decisions x WHERE x.run_id = r.run_id) AS decided "
        "FROM runs r JOIN datasets d USING (dataset_id) ORDER BY r.run_id"
    )


def latest_run_id(store: Store) -> int | None:
    rows = store.query("SELECT max(run_id) FROM runs")
    return int(rows[0][0]) if rows and rows[0][0] is not None else None


def run_status(store: Store, run_id: int) -> RunStatus:
    """Everything `srt status` shows, computed from stored rows only."""
    rows = store.query_dicts(
        "SELECT r.*, d.name AS dataset FROM runs r JOIN datasets d USING (dataset_id) "
        "WHERE run_id = ?",
        [run_id],
    )
    if not rows:
        raise LookupError(f"no run {run_id} in {store.path}")
    run = rows[0]
    limit = run["sample_limit"]
    key = run["teacher_key"]
    # The run's samples, as the pipeline takes them.
    sample_cte = (
        "WITH s AS (SELECT sample_id FROM samples WHERE dataset_id = ? ORDER BY position "
        + ("LIMIT ?" if limit is not None else "")
        + ") "
    )
    params: list[Any] = [run["dataset_id"], *([limit] if limit is not None else [])]

    def count(sql: str, extra: list[Any]) -> int:
        return int(store.query(sample_cte + sql, params + extra)[0][0])

    n = count("SELECT count(*) FROM s", [])
    made = (
        "SELECT count(DISTINCT sample_id) FROM ("
        "SELECT sample_id, kind FROM versions WHERE teacher_key = ? "
        "UNION ALL SELECT sample_id, kind FROM reflection_failures WHERE teacher_key = ?) "
        "WHERE kind IN ? AND sample_id IN (SELECT sample_id FROM s)"
    )
    counted = {
        Stage.INSTRUCTION_REFLECTION: count(made, [key, key, [Kind.Q]]),
        Stage.RESPONSE_REFLECTION: count(made, [key, key, [Kind.A, Kind.QA]]),
        Stage.DECISION: int(
            store.query("SELECT count(*) FROM decisions WHERE run_id = ?", [run_id])[0][0]
        ),
    }
    stages: dict[str, int] = {stage: counted[stage] for stage in STORED_STAGES}
    failures: dict[str, int] = {}
    for kind, outcome, k in store.query(
        sample_cte
        + "SELECT kind, outcome, count(*) FROM reflection_failures WHERE teacher_key = ? "
        "AND sample_id IN (SELECT sample_id FROM s) GROUP BY ALL ORDER BY ALL",
        [*params, key],
    ):
        failures[f"reflection {kind}: {outcome}"] = int(k)
    for status, k in store.query(
        sample_cte + "SELECT sc.status, count(DISTINCT v.pair_hash) FROM versions v "
        "JOIN scores sc ON sc.pair_hash = v.pair_hash AND sc.student_sha256 = ? "
        "AND sc.template = ? AND sc.max_tokens = ? "
        "WHERE v.teacher_key IN (?, '') AND v.sample_id IN (SELECT sample_id FROM s) "
        "AND sc.status <> 'ok' GROUP BY ALL ORDER BY ALL",
        [*params, run["student_sha256"], run["template"], run["max_tokens"], key],
    ):
        failures[f"score: {status}"] = int(k)
    for kind, k in store.query(
        sample_cte + "SELECT error_kind, count(*) FROM teacher_calls WHERE teacher_key = ? "
        "AND error_kind IS NOT NULL AND sample_id IN (SELECT sample_id FROM s) GROUP BY ALL",
        [*params, key],
    ):
        failures[f"teacher call: {kind}"] = int(k)
    calls = count(
        "SELECT count(*) FROM teacher_calls WHERE teacher_key = ? "
        "AND sample_id IN (SELECT sample_id FROM s)",
        [key],
    )
    by_branch = {
        str(b): int(k)
        for b, k in store.query(
            "SELECT branch, count(*) FROM decisions WHERE run_id = ? GROUP BY ALL ORDER BY ALL",
            [run_id],
        )
    }
    kept = int(store.query("SELECT count(*) FROM kept_samples WHERE run_id = ?", [run_id])[0][0])
    rate = None
    eta = None
    span = store.query(
        "SELECT count(*), epoch(max(decided_at)) - epoch(min(decided_at)) FROM decisions "
        "WHERE run_id = ?",
        [run_id],
    )[0]
    if span[0] and span[0] > 1 and span[1]:
        rate = 60.0 * (span[0] - 1) / float(span[1])
        if run["status"] == Status.RUNNING and rate > 0:
            eta = 60.0 * (n - stages[Stage.DECISION]) / rate
    resolved = json.loads(run["config"]).get("resolved_teacher")
    teacher = run["teacher_name"] + (
        f" -> {resolved}" if resolved and resolved != run["teacher_name"] else ""
    )
    return RunStatus(
        run_id=run_id,
        dataset=run["dataset"],
        status=run["status"],
        teacher=teacher,
        student=run["student_name"],
        samples=n,
        stages=stages,
        failures=failures,
        kept=kept,
        by_branch=by_branch,
        teacher_calls=calls,
        decisions_per_min=rate,
        eta_s=eta,
        error=run["error"],
    )
