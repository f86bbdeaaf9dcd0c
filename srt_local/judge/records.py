"""The judge's reads and writes: the pairs to compare, the judgements already stored, and one
transaction per judgement (its calls and its verdict together), so a killed run loses at most the
comparisons in flight and never stores a verdict without the calls that made it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from srt_local.pairs import Pair
from srt_local.store import Store
from srt_local.teachers.base import TeacherCall

AGAINST = ("original", "random")
SIDES = ("A", "B")  # where the selected pair is shown


@dataclass(frozen=True)
class Comparison:
    """One selected sample against its rival, to be judged in both orders."""

    sample_id: int
    other_sample_id: int
    selected: Pair
    other: Pair


@dataclass(frozen=True)
class JudgementKey:
    run_id: int
    sample_id: int
    against: str
    judge_key: str
    seed: int
    selected_side: str


def selected_pairs(store: Store, run_id: int) -> list[tuple[int, Pair]]:
    """The run's kept samples in dataset order, as export writes them.

    The one place the judge reads what a run kept: it reads the store's `selection` view.
    """
    rows = store.query(
        "SELECT sample_id, instruction, input, output FROM selection "
        "WHERE run_id = ? ORDER BY position",
        [run_id],
    )
    return [(int(sid), Pair(ins, inp, out)) for sid, ins, inp, out in rows]


def original_pairs(store: Store, sample_ids: list[int]) -> dict[int, Pair]:
    """The imported pairs of these samples."""
    if not sample_ids:
        return {}
    rows = store.query(
        "SELECT sample_id, instruction, input, output FROM samples WHERE sample_id IN "
        "(SELECT unnest(?::BIGINT[]))",
        [sample_ids],
    )
    return {int(sid): Pair(ins, inp, out) for sid, ins, inp, out in rows}


def comparisons(
    store: Store, run_id: int, against: str, seed: int, limit: int | None
) -> list[Comparison]:
    """The first `limit` kept samples (all if None), each with its rival: its own original, or for
    `random` the sample at the same rank of a seeded random draw from the whole dataset, as many
    as the selection holds (a same-size random sample, drawn the same way for the same seed)."""
    chosen = selected_pairs(store, run_id)
    if against == "original":
        partners = [sid for sid, _ in chosen]
    elif against == "random":
        dataset = store.query(
            "SELECT s.sample_id FROM samples s JOIN runs r USING (dataset_id) "
            "WHERE r.run_id = ? ORDER BY s.position",
            [run_id],
        )
        pool = np.array([int(r[0]) for r in dataset], dtype=np.int64)
        draw = np.random.default_rng(seed).choice(len(pool), size=len(chosen), replace=False)
        partners = [int(pool[i]) for i in draw]
    else:
        raise ValueError(f"against must be one of {', '.join(AGAINST)}, not {against!r}")
    pairs = list(zip(chosen, partners, strict=True))[: limit if limit is not None else None]
    originals = original_pairs(store, sorted({p for _, p in pairs}))
    return [Comparison(sid, other, pair, originals[other]) for (sid, pair), other in pairs]


def judged_keys(
    store: Store, run_id: int, against: str, judge_key: str, seed: int
) -> set[tuple[int, str]]:
    """(sample_id, selected_side) of every judgement already stored for this judge and seed."""
    rows = store.query(
        "SELECT sample_id, selected_side FROM judgements WHERE run_id = ? AND against = ? "
        "AND judge_key = ? AND seed = ?",
        [run_id, against, judge_key, seed],
    )
    return {(int(sid), str(side)) for sid, side in rows}


_CALL_COLUMNS = (
    "run_id",
    "sample_id",
    "against",
    "other_sample_id",
    "selected_side",
    "judge_key",
    "seed",
    "attempt",
    "judge_name",
    "backend",
    "model",
    "model_digest",
    "host",
    "options",
    "prompt_version",
    "output_mode",
    "messages",
    "raw_reply",
    "outcome",
    "verdict",
    "reason",
    "prompt_tokens",
    "prompt_eval_count",
    "prompt_truncated",
    "eval_count",
    "total_duration_ms",
    "load_duration_ms",
    "prompt_eval_duration_ms",
    "eval_duration_ms",
    "error_kind",
    "error_message",
    "started_at",
    "finished_at",
)
_INSERT_CALL = (
    f"INSERT INTO judge_calls ({', '.join(_CALL_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _CALL_COLUMNS)}) RETURNING call_id"
)


@dataclass
class JudgedCall:
    """A judge request as the teacher layer recorded it, with the verdict parsed from its reply."""

    call: TeacherCall
    verdict: str | None
    reason: str | None


def store_judgement(
    store: Store,
    key: JudgementKey,
    comparison: Comparison,
    calls: list[JudgedCall],
    verdict: str | None,
    reason: str | None,
) -> None:
    """Every call made for one comparison in one order, and its judgement, in one transaction."""
    outcome = "failed" if verdict is None else outcome_for(verdict, key.selected_side)
    with store.transaction() as con:
        call_id: int | None = None
        for judged in calls:
            call_id = _insert_call(con, key, comparison.other_sample_id, judged)
        con.execute(
            "INSERT INTO judgements (run_id, sample_id, against, judge_key, seed, selected_side, "
            "other_sample_id, selected_chars, other_chars, verdict, outcome, reason, call_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                key.run_id,
                key.sample_id,
                key.against,
                key.judge_key,
                key.seed,
                key.selected_side,
                comparison.other_sample_id,
                len(comparison.selected.output),
                len(comparison.other.output),
                verdict,
                outcome,
                reason,
                call_id,
            ],
        )


def outcome_for(verdict: str, selected_side: str) -> str:
    """win | tie | loss of the selected pair, from a verdict on the order it was shown in."""
    if verdict == "tie":
        return "tie"
    return "win" if verdict == selected_side else "loss"


def _insert_call(con: Any, key: JudgementKey, other: int, judged: JudgedCall) -> int:
    c = judged.call
    values = (
        key.run_id,
        key.sample_id,
        key.against,
        other,
        key.selected_side,
        key.judge_key,
        key.seed,
        c.attempt,
        c.teacher_name,
        c.backend,
        c.model,
        c.model_digest,
        c.host,
        json.dumps(c.options),
        c.prompt_version,
        c.output_mode,
        json.dumps(c.messages, ensure_ascii=False),
        c.raw_reply,
        c.outcome,
        judged.verdict,
        judged.reason,
        c.prompt_tokens,
        c.prompt_eval_count,
        c.prompt_truncated,
        c.eval_count,
        c.total_duration_ms,
        c.load_duration_ms,
        c.prompt_eval_duration_ms,
        c.eval_duration_ms,
        c.error_kind,
        c.error_message,
        _utc(c.started_at),
        _utc(c.finished_at),
    )
    row = con.execute(_INSERT_CALL, values).fetchone()
    return int(row[0])


def store_calls(store: Store, key: JudgementKey, other: int, calls: list[JudgedCall]) -> None:
    """Calls made for a comparison that was cut short (the judge became unusable): kept for the
    record, with no judgement, so the comparison is asked again next time."""
    with store.transaction() as con:
        for judged in calls:
            _insert_call(con, key, other, judged)


def _utc(moment: datetime) -> datetime:
    """A naive UTC datetime for a TIMESTAMP column (an aware one would be shifted to local time)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment
