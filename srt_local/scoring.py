"""The score cache: a pair is scored once per (student file, template, truncation, scoring path),
across runs.

Scores live in the store's `scores` table, keyed by (student_sha256, template, max_tokens,
score_path, pair_hash): the host and the device reduction round differently, so their scores never
mix. `score_cached` answers hits from the table, scores only the misses (each distinct pair
once) and writes them chunk by chunk, one transaction each, so an interrupted run keeps what it
scored. A decode error is not stored: it may not happen again.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import astuple, fields
from typing import Any, Protocol

from srt_local.pairs import Pair
from srt_local.store import Store
from srt_local.student import STATUS_DECODE_ERROR, PairScore, Student

SCORE_COLUMNS = tuple(f.name for f in fields(PairScore))
CHUNK = 64  # pairs per scoring call and per transaction
_LOOKUP = 1000  # hashes per lookup query


class ScoreKey(Protocol):
    """What names a student's scores in the cache: a loaded `Student`, or the key a remote
    scorer (Ray) reports, so the driver reads and writes the cache without the model."""

    @property
    def name(self) -> str: ...
    @property
    def sha256(self) -> str: ...
    @property
    def template(self) -> str: ...
    @property
    def max_tokens(self) -> int: ...
    @property
    def score_path(self) -> str: ...


def score_from_row(row: Mapping[str, Any]) -> PairScore:
    """A PairScore from a `scores` row (as a mapping of column names to values)."""
    values = {name: row[name] for name in SCORE_COLUMNS}
    values["n_y_tokens"] = int(values["n_y_tokens"] or 0)
    values["n_x_tokens"] = int(values["n_x_tokens"] or 0)
    return PairScore(**values)


def lookup_scores(store: Store, student: ScoreKey, hashes: Sequence[str]) -> dict[str, PairScore]:
    """The stored scores of these pair hashes for this student, template and truncation."""
    found: dict[str, PairScore] = {}
    columns = ", ".join(SCORE_COLUMNS)
    for k in range(0, len(hashes), _LOOKUP):
        rows = store.query_dicts(
            f"SELECT pair_hash, {columns} FROM scores WHERE student_sha256 = ? AND template = ? "
            "AND max_tokens = ? AND score_path = ? AND pair_hash IN (SELECT unnest(?::VARCHAR[]))",
            [
                student.sha256,
                student.template,
                student.max_tokens,
                student.score_path,
                list(hashes[k : k + _LOOKUP]),
            ],
        )
        for row in rows:
            found[row["pair_hash"]] = score_from_row(row)
    return found


def store_scores(store: Store, student: ScoreKey, scored: Sequence[tuple[str, PairScore]]) -> None:
    """Insert scores in one transaction; a key already present is left as it is."""
    key = [student.sha256, student.template, student.max_tokens, student.score_path]
    rows = [
        [*key, pair_hash, student.name, *astuple(score)]
        for pair_hash, score in scored
        if score.status != STATUS_DECODE_ERROR
    ]
    if not rows:
        return
    columns = "student_sha256, template, max_tokens, score_path, pair_hash, student_name, " + (
        ", ".join(SCORE_COLUMNS)
    )
    marks = "(" + ", ".join("?" * (6 + len(SCORE_COLUMNS))) + ")"
    # One statement for the chunk: DuckDB's executemany runs one statement per row, about 30 ms
    # each, which was most of the time `srt score` spent outside llama.cpp on small inputs.
    values = ", ".join([marks] * len(rows))
    params = [value for row in rows for value in row]
    with store.transaction() as con:
        con.execute(f"INSERT OR IGNORE INTO scores ({columns}) VALUES {values}", params)


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
    tally = _Tally(progress, sum(weight[h] for h in known))
    for k in range(0, len(misses), CHUNK):
        chunk = misses[k : k + CHUNK]
        tally.start_chunk([weight[h] for h in chunk])
        scores = student.score_pairs([first[h] for h in chunk], tally)
        scored = list(zip(chunk, scores, strict=True))
        if store is not None:
            store_scores(store, student, scored)
        known.update(scored)
    return [known[h] for h in hashes]


class _Tally:
    """Progress over the whole input from the progress of one scoring call after another.

    A pair that occurs n times in the input counts n samples (the student reports how many of
    its chunk are done, not which: the first ones in the chunk stand for them).
    """

    def __init__(self, progress: Callable[[int, int], None] | None, samples: int) -> None:
        self.progress = progress
        self.samples = samples
        self.tokens = 0
        self.prefix = [0]
        self.reported = (0, 0)
        if progress is not None and samples:
            progress(samples, 0)

    def start_chunk(self, weights: list[int]) -> None:
        self.samples += self.prefix[self.reported[0]]
        self.tokens += self.reported[1]
        self.prefix = list(itertools.accumulate(weights, initial=0))
        self.reported = (0, 0)

    def __call__(self, samples: int, tokens: int) -> None:
        self.reported = (samples, tokens)
        if self.progress is not None:
            self.progress(self.samples + self.prefix[samples], self.tokens + tokens)
