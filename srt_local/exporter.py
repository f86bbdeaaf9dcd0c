"""Export a run's selection as a training file plus the LLaMA-Factory entry that loads it.

The selection is the store's `selection` view for the run: its `kept_samples` (the one definition
of kept, overrides applied) with the texts of each final version, in dataset order.
The optional final cut of METHOD.md keeps, among the rows with IFD < 1, the k with the highest IFD,
written in that rank order (IFD descending, ties by dataset order). `top_fraction` F keeps
ceil(F x n) rows, n being the size of the selection, so a small fraction never rounds to nothing.
A run of the `paper` profile follows the reference instead (`top_k_rule`): floor(F x n) rows,
among those with IFD <= 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srt_local.errors import SrtError
from srt_local.formats import (
    ExportRow,
    check_out_path,
    dataset_info_entry,
    update_dataset_info,
    write_dataset,
)
from srt_local.pairs import Pair
from srt_local.run.vocabulary import Profile
from srt_local.store import Store


class ExportError(SrtError, ValueError):
    """The export cannot be made as asked (unknown run, bad top-k)."""


@dataclass
class ExportReport:
    """What was written where."""

    run_id: int
    path: Path
    format: str
    n_selected: int  # rows in the run's selection
    n_written: int  # after the top-k cut, if any
    info_path: Path
    entry_name: str
    entry: dict[str, Any]
    replaced_entry: bool


def select_rows(
    store: Store, run_id: int, top_k: int | None = None, top_fraction: float | None = None
) -> tuple[list[ExportRow], int]:
    """The run's selection (cut to the top k by IFD if asked) and the selection's full size."""
    if top_k is not None and top_fraction is not None:
        raise ExportError("give --top-k or --top-fraction, not both")
    if top_k is not None and top_k < 1:
        raise ExportError(f"--top-k must be at least 1, got {top_k}")
    if top_fraction is not None and not 0 < top_fraction <= 1:
        raise ExportError(f"--top-fraction must be in (0, 1], got {top_fraction}")
    found = store.query("SELECT profile FROM runs WHERE run_id = ?", [run_id])
    if not found:
        raise ExportError(f"no run {run_id}; {_runs_hint(store)}")
    profile = Profile(found[0][0] or Profile.DEFAULT)
    rows = [
        ExportRow(Pair(instruction, input_, output), ifd, rifd)
        for instruction, input_, output, ifd, rifd in store.query(
            "SELECT instruction, input, output, ifd_ppl, rifd_ppl FROM selection "
            "WHERE run_id = ? ORDER BY position",
            [run_id],
        )
    ]
    if top_k is None and top_fraction is None:
        return rows, len(rows)
    k, eligible_ifd = top_k_rule(profile, len(rows), top_k, top_fraction)
    eligible = [
        (i, r) for i, r in enumerate(rows) if r.ifd_ppl is not None and eligible_ifd(r.ifd_ppl)
    ]
    eligible.sort(key=lambda item: (-(item[1].ifd_ppl or 0.0), item[0]))
    return [r for _, r in eligible[:k]], len(rows)


def top_k_rule(
    profile: Profile, n: int, top_k: int | None, top_fraction: float | None
) -> tuple[int, Callable[[float], bool]]:
    """How many rows the final cut keeps out of `n`, and which IFDs may be kept.

    `default` rounds a fraction up (a small one never keeps nothing) and keeps IFD < 1, as the
    decision rule does; `paper` floors, as the reference's `int(F * n)`, and keeps IFD <= 1.
    """
    # The small epsilon keeps float noise (0.1 * 30 = 3.0000000000000004) from moving a row.
    if profile is Profile.PAPER:
        k = top_k if top_k is not None else math.floor((top_fraction or 0) * n + 1e-9)
        return k, lambda ifd: ifd <= 1
    k = top_k if top_k is not None else math.ceil((top_fraction or 0) * n - 1e-9)
    return k, lambda ifd: ifd < 1


def export_run(
    store: Store,
    run_id: int,
    fmt: str,
    out: Path,
    top_k: int | None = None,
    top_fraction: float | None = None,
    with_scores: bool = False,
) -> ExportReport:
    """Write the run's selection to `out` in `fmt` and add its entry to out's dataset_info.json."""
    check_out_path(out, fmt)
    rows, n_selected = select_rows(store, run_id, top_k, top_fraction)
    write_dataset(out, rows, fmt, with_scores)
    entry = dataset_info_entry(out.name, fmt)
    info_path, replaced = update_dataset_info(out.parent, out.stem, entry)
    return ExportReport(
        run_id=run_id,
        path=out,
        format=fmt,
        n_selected=n_selected,
        n_written=len(rows),
        info_path=info_path,
        entry_name=out.stem,
        entry=entry,
        replaced_entry=replaced,
    )


def _runs_hint(store: Store) -> str:
    runs = store.query(
        "SELECT r.run_id, d.name, r.status FROM runs r LEFT JOIN datasets d USING (dataset_id) "
        "ORDER BY r.run_id"
    )
    if not runs:
        return "there are no runs yet (start one with `srt run DATASET`)"
    listed = ", ".join(f"{run_id} ({name}, {status})" for run_id, name, status in runs)
    return f"runs: {listed}"
