"""Everything a run's report shows, read from the store once, for the HTML file and the TUI alike.

Kept means what export writes: the rows of the `selection` view (overrides applied).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from srt_local import __version__
from srt_local.errors import SrtError
from srt_local.judge.results import JudgedComparison, judged_comparisons
from srt_local.pairs import Pair
from srt_local.store import Store

# Kept samples need IFD < 1 and r-IFD < 1 (METHOD.md); drawn on both histograms.
IFD_THRESHOLD = 1.0
RIFD_THRESHOLD = 1.0
N_EXAMPLES = 4


class ReportError(SrtError):
    """No such run."""


@dataclass(frozen=True)
class ExampleView:
    """One sample side by side: its original and the version the decision stands on."""

    sample_id: int
    location: str
    branch: str
    kept: bool
    original: Pair
    selected: Pair
    ifd: float | None
    rifd: float | None
    verdicts: list[tuple[str, str, str]]  # (order, outcome for the selected pair, reason)


@dataclass(frozen=True)
class ReportData:
    run: dict[str, Any]
    generated_at: str
    srt_version: str
    teachers: list[dict[str, Any]]  # provenance of the run's teacher calls
    judges: list[dict[str, Any]]  # provenance of the run's judge calls
    decided: int
    kept: int
    overridden_by_person: int
    overridden_by_judge: int
    branches: list[tuple[str, int, int]]  # (branch, decided, kept)
    reasons: list[tuple[str, int]]
    ifd_ori: list[float]
    ifd_reflected: list[float]
    rifd_base: list[float]
    rifd_reflected: list[float]
    ifd_kept: list[float]
    rifd_kept: list[float]
    comparisons: list[JudgedComparison]
    examples: list[ExampleView] = field(default_factory=list)


def _column(store: Store, sql: str, run_id: int) -> list[float]:
    rows = store.query(sql, [run_id])
    return [
        float(r[0]) for r in rows if r[0] is not None and r[0] == r[0] and abs(r[0]) != float("inf")
    ]


def gather(store: Store, run_id: int, boot_seed: int | None = None) -> ReportData:
    """The report's figures for one run (ReportError if there is no such run)."""
    runs = store.query_dicts(
        "SELECT r.*, d.name AS dataset, d.source_path, d.source_sha256, d.n_imported "
        "FROM runs r JOIN datasets d USING (dataset_id) WHERE run_id = ?",
        [run_id],
    )
    if not runs:
        raise ReportError(f"no run {run_id} in {store.path}")
    run = runs[0]
    run["config"] = json.loads(run["config"]) if isinstance(run["config"], str) else run["config"]
    teachers = store.query_dicts(
        "SELECT teacher_name, backend, model, model_digest, host, output_mode, "
        "string_agg(DISTINCT prompt_version, ', ') AS prompt_versions, count(*) AS calls, "
        "count(*) FILTER (WHERE outcome = 'ok') AS ok "
        "FROM teacher_calls WHERE teacher_key = ? AND sample_id IN "
        "(SELECT sample_id FROM decisions WHERE run_id = ?) GROUP BY ALL ORDER BY ALL",
        [run["teacher_key"], run_id],
    )
    judges = store.query_dicts(
        "SELECT judge_key, judge_name, backend, model, model_digest, host, prompt_version, "
        "against, seed, count(*) AS calls, count(*) FILTER (WHERE outcome = 'ok') AS ok "
        "FROM judge_calls WHERE run_id = ? GROUP BY ALL ORDER BY ALL",
        [run_id],
    )
    counts = store.query(
        "SELECT count(*), count(*) FILTER (WHERE override IS NOT NULL), "
        "(SELECT count(*) FROM judge_overrides j WHERE j.run_id = ?), "
        "(SELECT count(*) FROM selection s WHERE s.run_id = ?) "
        "FROM decisions WHERE run_id = ?",
        [run_id, run_id, run_id],
    )[0]
    branches = [
        (str(b), int(n), int(k))
        for b, n, k in store.query(
            "SELECT d.branch, count(*), count(s.sample_id) FROM decisions d "
            "LEFT JOIN selection s USING (run_id, sample_id) WHERE d.run_id = ? "
            "GROUP BY d.branch ORDER BY list_position(['QA', 'Q', 'A', 'ori'], d.branch)",
            [run_id],
        )
    ]
    reasons = [
        (str(r), int(n))
        for r, n in store.query(
            "SELECT reason, count(*) FROM decisions WHERE run_id = ? GROUP BY ALL "
            "ORDER BY 2 DESC, 1",
            [run_id],
        )
    ]
    where = "FROM decisions WHERE run_id = ? ORDER BY sample_id"
    comparisons = judged_comparisons(store, run_id, boot_seed=boot_seed)
    return ReportData(
        run=run,
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        srt_version=__version__,
        teachers=teachers,
        judges=judges,
        decided=int(counts[0]),
        kept=int(counts[3]),
        overridden_by_person=int(counts[1]),
        overridden_by_judge=int(counts[2]),
        branches=branches,
        reasons=reasons,
        ifd_ori=_column(store, f"SELECT ifd_ori {where}", run_id),
        ifd_reflected=_column(store, f"SELECT ifd_q {where}", run_id),
        rifd_base=_column(store, f"SELECT rifd_base {where}", run_id),
        rifd_reflected=_column(store, f"SELECT rifd_reflected {where}", run_id),
        ifd_kept=_column(
            store, "SELECT ifd_ppl FROM selection WHERE run_id = ? ORDER BY sample_id", run_id
        ),
        rifd_kept=_column(
            store, "SELECT rifd_ppl FROM selection WHERE run_id = ? ORDER BY sample_id", run_id
        ),
        comparisons=comparisons,
        examples=_examples(store, run_id, comparisons),
    )


def _examples(
    store: Store, run_id: int, comparisons: list[JudgedComparison], n: int = N_EXAMPLES
) -> list[ExampleView]:
    """A few samples side by side: against the original, one the judge found a win, one a loss,
    one a tie if there are any, then the first kept samples."""
    chosen: list[int] = []
    against_original = next((c for c in comparisons if c.against == "original"), None)
    if against_original is not None:
        for wanted in ("win", "loss", "tie"):
            sid = next(
                (s.sample_id for s in against_original.samples if s.combined == wanted), None
            )
            if sid is not None:
                chosen.append(sid)
    for (sid,) in store.query(
        "SELECT sample_id FROM selection WHERE run_id = ? ORDER BY position LIMIT ?", [run_id, n]
    ):
        if len(chosen) < n and int(sid) not in chosen:
            chosen.append(int(sid))
    views = []
    for sid in chosen[:n]:
        rows = store.query_dicts(
            "SELECT s.location, d.branch, d.final_kind, d.ifd_final, d.rifd_final, "
            "s.instruction, s.input, s.output, v.instruction AS v_instruction, "
            "v.input AS v_input, v.output AS v_output, "
            "EXISTS (SELECT 1 FROM selection x WHERE x.run_id = d.run_id "
            "AND x.sample_id = d.sample_id) AS kept "
            "FROM decisions d JOIN runs r USING (run_id) JOIN samples s USING (sample_id) "
            "LEFT JOIN versions v ON v.sample_id = d.sample_id AND v.kind = d.final_kind "
            "AND v.teacher_key = CASE WHEN d.final_kind = 'ori' THEN '' ELSE r.teacher_key END "
            "WHERE d.run_id = ? AND d.sample_id = ?",
            [run_id, sid],
        )
        if not rows:
            continue
        row = rows[0]
        original = Pair(row["instruction"], row["input"], row["output"])
        selected = (
            Pair(row["v_instruction"], row["v_input"], row["v_output"])
            if row["v_instruction"] is not None
            else original
        )
        verdicts = [
            (f"{against}, selected shown {side}", str(outcome), str(reason or ""))
            for against, side, outcome, reason in store.query(
                "SELECT against, selected_side, outcome, reason FROM judgements "
                "WHERE run_id = ? AND sample_id = ? ORDER BY against, judge_key, selected_side",
                [run_id, sid],
            )
        ]
        views.append(
            ExampleView(
                sample_id=sid,
                location=str(row["location"]),
                branch=str(row["branch"]),
                kept=bool(row["kept"]),
                original=original,
                selected=selected,
                ifd=row["ifd_final"],
                rifd=row["rifd_final"],
                verdicts=verdicts,
            )
        )
    return views
