"""Close the loop: the judge's verdicts as review overrides, kept apart from a person's.

`apply_verdicts` rejects every kept sample whose selected pair lost to its own original in both
orders; the rows go to `judge_overrides`, which the `selection` view (and so export) follows. A
person's override in `decisions.override` always wins over the judge's. `unapply` removes them.
"""

from __future__ import annotations

from srt_local.store import Store

REJECT_REASON = "the judge preferred the original in both orders"


def apply_verdicts(store: Store, run_id: int, judge_key: str) -> int:
    """Record a judge reject for each sample that lost both orders against its original; how many
    overrides the run now has from this judge (a sample already overridden is replaced)."""
    with store.transaction() as con:
        con.execute(
            "INSERT OR REPLACE INTO judge_overrides (run_id, sample_id, override, judge_key, "
            "against, seed, reason) "
            "SELECT run_id, sample_id, 'reject', judge_key, 'original', 0, ? FROM judgements "
            "WHERE run_id = ? AND judge_key = ? AND against = 'original' AND seed = 0 "
            "GROUP BY run_id, sample_id, judge_key "
            "HAVING count(*) FILTER (WHERE outcome = 'loss') = 2",
            [REJECT_REASON, run_id, judge_key],
        )
        row = con.execute(
            "SELECT count(*) FROM judge_overrides WHERE run_id = ? AND judge_key = ?",
            [run_id, judge_key],
        ).fetchone()
    return int(row[0]) if row else 0


def unapply(store: Store, run_id: int) -> int:
    """Remove every judge override of the run; how many were removed."""
    with store.transaction() as con:
        rows = con.execute(
            "DELETE FROM judge_overrides WHERE run_id = ? RETURNING sample_id", [run_id]
        ).fetchall()
    return len(rows)


def judge_overrides(store: Store, run_id: int) -> dict[int, str]:
    """sample_id -> the judge's override, for the run."""
    rows = store.query("SELECT sample_id, override FROM judge_overrides WHERE run_id = ?", [run_id])
    return {int(sid): str(value) for sid, value in rows}
