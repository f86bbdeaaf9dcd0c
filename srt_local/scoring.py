"""The score cache: a pair is scored once per (student file, template, truncation), across runs.

Scores live in the store's `scores` table, keyed by (student_sha256, template, max_tokens,
pair_hash). `score_cached` answers hits from the table, scores only the misses (each distinct pair
once) and writes them chunk by chunk, one transaction each, so an interrupted run keeps what it
scored. A decode error is not stored: it may not happen again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import astuple, fields
from typing import Any

from srt_local.pairs import Pair
from srt_local.store import Store
from srt_local.student import STATUS_DECODE_ERROR, PairScore, Student

SCORE_COLUMNS = tuple(f.name for f in fields(PairScore))
CHUNK = 64  # pairs per scoring call and per transaction
_LOOKUP = 1000  # hashes per lookup query


def score_from_row(row: Mapping[str, Any]) -> PairScore:
    """A PairScore from a `scores` row (as a mapping of column names to values)."""
    values = {name: row[name] for name in SCORE_COLUMNS}
    values["n_y_tokens"] = int(values["n_y_tokens"] or 0)
    values["n_x_tokens"] = int(values["n_x_tokens"] or 0)
    return PairScore(**values)


def lookup_scores(store: Store, student: Student, hashes: Sequence[str]) -> dict[str, PairScore]:
    """The stored scores of these pair hashes for this student, template and truncation."""
    found: dict[str, PairScore] = {}
    columns = ", ".join(SCORE_COLUMNS)
    for k in range(0, len(hashes), _LOOKUP):
        rows = store.query_dicts(
            f"SELECT pair_hash, {columns} FROM scores WHERE student_sha256 = ? AND template = ? "
            "AND max_tokens = ? AND pair_hash IN (SELECT unnest(?::VARCHAR[]))",
            [student.sha256, student.template, student.max_tokens, list(hashes[k : k + _LOOKUP])],
        )
        for row in rows:
            found[row["pair_hash"]] = score_from_row(row)
    return found


def store_scores(store: Store, student: Student, scored: Sequence[tuple[str, PairScore]]) -> None:
    """Insert scores in one transaction; a key already present is left as it is."""
    key = [student.sha256, student.template, student.max_tokens]
    rows = [
        [*key, pair_hash, student.name, *astuple(score)]
        for pair_hash, score in scored
        if score.status != STATUS_DECODE_ERROR
    ]
    if not rows:
        return
    columns = "student_sha256, template, max_tokens, pair_hash, student_name, " + ", ".join(
        SCORE_COLUMNS
    )
    marks = ", ".join("?" * (5 + len(SCORE_COLUMNS)))
    with store.transaction() as con:
        con.executemany(f"INSERT OR IGNORE INTO scores ({columns}) VALUES ({marks})", rows)


def score_cached(
    student: Student,
    pairs: Sequence[Pair],
    store: Store | None,
    progress: Callable[[int, int], None] | None = None,
) -> list[PairScore]:
    """Scores of `pairs` in input order, from the store where present, else scored and stored.

    `progress(samples_done, target_tokens_done)` counts input pairs (hits and repeats included)
    and the target tokens scored in this call.
    """
    hashes = [pair.hash for pair in pairs]
    weight: dict[str, int] = {}
    first: dict[str, Pair] = {}
    for h, pair in zip(hashes, pairs, strict=True):
        weight[h] = weight.get(h, 0) + 1
        first.setdefault(h, pair)
    known = lookup_scores(store, student, list(first)) if store is not None else {}
    misses = [h for h in first if h not in known]
    done = [sum(weight[h] for h in known), 0]
    if progress is not None and done[0]:
        progress(done[0], 0)
    for k in range(0, len(misses), CHUNK):
        chunk = misses[k : k + CHUNK]
        base = done[:]
        counted = [0]

        def step(_samples: int, tokens: int, chunk: list[str] = chunk, base: list[int] = base,
                 counted: list[int] = counted) -> None:  # fmt: skip
            # The student reports samples of this chunk in completion order; weights are by
            # position, so count hashes as the reported total grows.
            while counted[0] < _samples:
                done[0] += weight[chunk[counted[0]]]
                counted[0] += 1
            done[1] = base[1] + tokens
            if progress is not None:
                progress(done[0], done[1])

        scores = student.score_pairs([first[h] for h in chunk], step)
        scored = list(zip(chunk, scores, strict=True))
        if store is not None:
            store_scores(store, student, scored)
        known.update(scored)
        done[0] = base[0] + sum(weight[h] for h in chunk)
    return [known[h] for h in hashes]
