""" "Kept" has one definition (the store's `kept_samples` view): the run summary, `srt status`,
Browse and export agree on it, also after a person rejects an emitted sample."""

from __future__ import annotations

from pathlib import Path

from srt_local.config import load_models
from srt_local.exporter import select_rows
from srt_local.review import (
    BrowseFilter,
    browse_page,
    sample_detail,
    score_distributions,
    set_override,
)
from srt_local.run_status import run_status
from tests.fakes import FakeReflector, FakeScorer
from tests.test_run_engine import BRANCHES, all_branches, execute, make_run


def test_summary_status_browse_and_export_agree_on_kept(tmp_path: Path) -> None:
    config = load_models()
    store, run_id = make_run(tmp_path, list(BRANCHES))
    summary = execute(store, run_id, config, FakeReflector(), all_branches())
    emitted = [
        int(r[0]) for r in store.query("SELECT sample_id FROM decisions WHERE emitted ORDER BY 1")
    ]
    assert len(emitted) == 2 and summary.kept == 2

    # A person rejects an emitted sample and accepts one the rule did not emit.
    set_override(store, run_id, emitted[0], "reject")
    not_emitted = store.query("SELECT min(sample_id) FROM decisions WHERE NOT emitted")[0][0]
    set_override(store, run_id, not_emitted, "accept")
    expected = sorted({emitted[1], not_emitted})

    # The summary of the same run again (done: no work, counts read back).
    again = execute(store, run_id, config, FakeReflector(), FakeScorer())
    assert (again.kept, again.rejected) == (2, 2)
    assert run_status(store, run_id).kept == 2
    page, total = browse_page(store, run_id, BrowseFilter(outcome="kept"), limit=10)
    assert sorted(page.column("id").to_pylist()) == expected and total == 2
    everything, _ = browse_page(store, run_id, BrowseFilter(), limit=10)
    kept_column = dict(
        zip(everything.column("id").to_pylist(), everything.column("kept").to_pylist(), strict=True)
    )
    assert sorted(k for k, v in kept_column.items() if v) == expected
    assert not sample_detail(store, run_id, emitted[0]).kept
    assert sample_detail(store, run_id, not_emitted).kept
    assert score_distributions(store, run_id).kept == 2
    rows, n_selected = select_rows(store, run_id)
    assert n_selected == len(rows) == 2
    exported = {r.pair.instruction for r in rows}
    kept_instructions = {
        str(r[0])
        for r in store.query(
            "SELECT v.instruction FROM selection v WHERE run_id = ? ORDER BY position", [run_id]
        )
    }
    assert exported == kept_instructions
