"""A run's state read back from the store: per-stage counts, failures by kind, throughput, ETA."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from srt_local.host_stats import HostStats
from srt_local.review import KEPT_SQL
from srt_local.run.vocabulary import (
    STORED_STAGES,
    Kind,
    Stage,
    call_failure_name,
    failure_name,
)
from srt_local.run.vocabulary import RunStatus as Status
from srt_local.store import Store

# What the host column of a teacher call without a server (the embedded teacher) is shown as.
EMBEDDED_HOST = "(in process)"


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
    # Per server that answered the teacher (a pool's hosts; None: the embedded teacher).
    hosts: list[HostStats] = field(default_factory=list)


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
    # The run's samples, as the pipeline takes them. Every count below is one scan of its table
    # (FILTER and GROUP BY, not one query per number), to keep `srt status` quick at 1M pairs.
    sample_cte = (
        "WITH s AS (SELECT sample_id FROM samples WHERE dataset_id = ? "
        + ("ORDER BY position LIMIT ?" if limit is not None else "")
        + ") "
    )
    params: list[Any] = [run["dataset_id"], *([limit] if limit is not None else [])]

    n, lo, hi = store.query(
        sample_cte + "SELECT count(*), min(sample_id), max(sample_id) FROM s", params
    )[0]
    n = int(n)
    # An import inserts a dataset in one statement, so its ids are one run of the sequence: then
    # "in the run" is a range that DuckDB prunes by zone maps, not a semi-join on a million ids.
    cte: str
    if n and hi - lo + 1 == n:
        cte, cte_params, in_run, in_params = "", [], "sample_id BETWEEN ? AND ?", [lo, hi]
    else:
        cte, cte_params = sample_cte, params
        in_run, in_params = "sample_id IN (SELECT sample_id FROM s)", []
    made = (
        "SELECT count(DISTINCT sample_id) FROM ("
        "SELECT sample_id, kind FROM versions WHERE teacher_key = ? "
        f"UNION ALL SELECT sample_id, kind FROM reflection_failures WHERE teacher_key = ?) "
        f"WHERE kind IN ? AND {in_run}"
    )

    def count_made(kinds: list[str]) -> int:
        # One query per stage: DuckDB runs two filtered DISTINCT counts in one far slower.
        return int(store.query(cte + made, [*cte_params, key, key, kinds, *in_params])[0][0])

    by_branch: dict[str, int] = {}
    decided = kept = 0
    for branch, k, k_kept in store.query(
        f"SELECT branch, count(*), count(*) FILTER (WHERE {KEPT_SQL}) FROM decisions d "
        "WHERE run_id = ? GROUP BY ALL ORDER BY ALL",
        [run_id],
    ):
        by_branch[str(branch)] = int(k)
        decided += int(k)
        kept += int(k_kept)
    counted = {
        Stage.INSTRUCTION_REFLECTION: count_made([Kind.Q]),
        Stage.RESPONSE_REFLECTION: count_made([Kind.A, Kind.QA]),
        Stage.DECISION: decided,
    }
    stages: dict[str, int] = {stage: counted[stage] for stage in STORED_STAGES}
    failures: dict[str, int] = {}
    for kind, outcome, k in store.query(
        cte + "SELECT kind, outcome, count(*) FROM reflection_failures WHERE teacher_key = ? "
        f"AND {in_run} GROUP BY ALL ORDER BY ALL",
        [*cte_params, key, *in_params],
    ):
        failures[failure_name(kind, outcome)] = int(k)
    student = [run["student_sha256"], run["template"], run["max_tokens"]]
    # Failed scores are few: look for them first, and join the run's versions only if any exist.
    bad_scores = (
        "SELECT pair_hash, status FROM scores WHERE student_sha256 = ? AND template = ? "
        "AND max_tokens = ? AND status <> 'ok'"
    )
    if store.query(f"SELECT count(*) FROM ({bad_scores})", student)[0][0]:
        for status, k in store.query(
            cte + f"SELECT sc.status, count(DISTINCT sc.pair_hash) FROM ({bad_scores}) sc "
            "WHERE sc.pair_hash IN (SELECT pair_hash FROM versions WHERE teacher_key IN (?, '') "
            f"AND {in_run}) GROUP BY ALL ORDER BY ALL",
            [*cte_params, *student, key, *in_params],
        ):
            failures[f"score: {status}"] = int(k)
    calls = 0
    for kind, k in store.query(
        cte + "SELECT error_kind, count(*) FROM teacher_calls WHERE teacher_key = ? "
        f"AND {in_run} GROUP BY ALL ORDER BY ALL",
        [*cte_params, key, *in_params],
    ):
        calls += int(k)
        if kind is not None:
            failures[call_failure_name(kind)] = int(k)
    hosts = [
        HostStats(host=host or EMBEDDED_HOST, calls=int(n), errors=int(e), mean_ms=mean)
        for host, n, e, mean in store.query(
            cte + "SELECT host, count(*), count(error_kind), "
            "avg(date_diff('millisecond', started_at, finished_at)) "
            "FILTER (WHERE error_kind IS NULL) FROM teacher_calls WHERE teacher_key = ? "
            f"AND {in_run} GROUP BY ALL ORDER BY ALL",
            [*cte_params, key, *in_params],
        )
    ]
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
        hosts=hosts,
    )
