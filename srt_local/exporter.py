"""Export a run's selection as a training file plus the LLaMA-Factory entry that loads it.

The selection is the store's `selection` view for the run: its `kept_samples` (the one definition
of kept, overrides applied) with the texts of each final version, in dataset order.
The optional final cut of METHOD.md keeps, among the rows with IFD < 1, the k with the highest IFD,
written in that rank order (IFD descending, ties by dataset order). `top_fraction` F keeps
ceil(F x n) rows, n being the size of the selection, so a small fraction never rounds to nothing.

Rows go from the store to the file in Arrow batches (the cut is made in SQL), so an export of a
million rows holds one batch in memory, not the selection.
A run of the `paper` profile follows the reference instead (`top_k_rule`): floor(F x n) rows,
among those with IFD <= 1.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srt_local.errors import SrtError
from srt_local.formats import (
    ExportRow,
    check_out_path,
    dataset_info_entry,
    read_dataset_info,
    update_dataset_info,
    write_dataset,
)
from srt_local.pairs import Pair
from srt_local.run.vocabulary import Profile
from srt_local.store import Store

EXPORT_MEMORY_LIMIT = "400MB"  # DuckDB's share while an export runs


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
    rows, n_selected = iter_rows(store, run_id, top_k, top_fraction)
    return list(rows), n_selected


def iter_rows(
    store: Store, run_id: int, top_k: int | None = None, top_fraction: float | None = None
) -> tuple[Iterator[ExportRow], int]:
    """Like select_rows, the rows streamed from the store: consume them before other store use."""
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
    n_selected = int(store.query("SELECT count(*) FROM selection WHERE run_id = ?", [run_id])[0][0])
    columns = "SELECT instruction, input, output, ifd_ppl, rifd_ppl FROM selection WHERE run_id = ?"
    if top_k is None and top_fraction is None:
        return _rows(store, f"{columns} ORDER BY position", [run_id]), n_selected
    k, _eligible = top_k_rule(profile, n_selected, top_k, top_fraction)
    # NaN is above every number in DuckDB, so the bound leaves it out, as it would in Python.
    bound = "ifd_ppl <= 1" if profile is Profile.PAPER else "ifd_ppl < 1"
    sql = f"{columns} AND {bound} ORDER BY ifd_ppl DESC, position LIMIT ?"
    return _rows(store, sql, [run_id, k]), n_selected


def _rows(store: Store, sql: str, params: list[Any]) -> Iterator[ExportRow]:
    for batch in store.arrow_batches(sql, params):
        columns = [batch.column(i).to_pylist() for i in range(5)]
        for instruction, input_, output, ifd, rifd in zip(*columns, strict=True):
            yield ExportRow(Pair(instruction, input_, output), ifd, rifd)


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
    force: bool = False,
) -> ExportReport:
    """Write the run's selection to `out` in `fmt` and add its entry to out's dataset_info.json.

    Refused, with nothing written: an `out` that exists (unless `force`), one that is a dataset's
    source file or the dataset_info.json the entry goes into, a dataset_info.json that cannot be
    merged, and an empty selection.
    """
    check_out_path(out, fmt)
    check_targets(store, out, force)  # i9: refusals before any work
    read_dataset_info(out.parent)  # i9: a dataset_info.json we cannot merge refuses the export now
    # The selection's joins and sort spill to disk past this, rather than growing with the run
    # (1.7 GB at a million pairs without it, about 0.5 GB with it).
    with store.settings(memory_limit=EXPORT_MEMORY_LIMIT):
        rows, n_selected = iter_rows(store, run_id, top_k, top_fraction)
        first = next(rows, None)
        if first is None:  # i9: an empty selection is refused, with no file and no entry
            raise ExportError(_empty_message(run_id, n_selected))
        n_written = write_dataset(out, itertools.chain([first], rows), fmt, with_scores)
    entry = dataset_info_entry(out.name, fmt)
    info_path, replaced = update_dataset_info(out.parent, out.stem, entry)
    return ExportReport(
        run_id=run_id,
        path=out,
        format=fmt,
        n_selected=n_selected,
        n_written=n_written,
        info_path=info_path,
        entry_name=out.stem,
        entry=entry,
        replaced_entry=replaced,
    )


def check_targets(store: Store, out: Path, force: bool) -> None:
    """Never overwrite a dataset's source file or dataset_info.json; anything else that exists
    only with `force`."""
    target = out.expanduser().resolve()
    if target.name == "dataset_info.json":
        raise ExportError(
            f"{out}: that is the dataset_info.json the entry is merged into; name the data file "
            "otherwise (the entry takes the file's stem)"
        )
    for name, source in store.query("SELECT name, source_path FROM datasets ORDER BY dataset_id"):
        if source and Path(source).expanduser().resolve() == target:
            raise ExportError(
                f"{out}: that is the source file of dataset {name!r}; export to another file"
            )
    if target.is_dir():
        raise ExportError(f"{out}: is a folder; --out names the file to write")
    if target.exists() and not force:
        raise ExportError(f"{out}: the file exists; give --force to replace it, or another --out")


def _empty_message(run_id: int, n_selected: int) -> str:
    if n_selected:
        return (
            f"run {run_id}: the cut leaves no sample (none of the {n_selected} selected has "
            "IFD < 1); nothing was written"
        )
    return (
        f"run {run_id}: the selection is empty (no sample kept yet); nothing was written and "
        "dataset_info.json was left unchanged. `srt status` shows where the samples went"
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
