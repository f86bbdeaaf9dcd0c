"""The engine side of the TUI (srt_local.review): overrides, the Browse queries, the word diff."""

from __future__ import annotations

import subprocess
import sys

import pytest

from srt_local.review import (
    BrowseFilter,
    browse_page,
    sample_detail,
    score_distributions,
    set_override,
    word_diff,
)
from srt_local.store import Store


def selected(store: Store, run_id: int) -> list[int]:
    return [
        int(r[0])
        for r in store.query(
            "SELECT sample_id FROM selection WHERE run_id = ? ORDER BY sample_id", [run_id]
        )
    ]


def test_override_changes_the_selection_and_clearing_restores_it(
    store_run: tuple[Store, int],
) -> None:
    store, run_id = store_run
    before = selected(store, run_id)
    assert before == [1, 2, 6]
    set_override(store, run_id, 3, "accept")
    set_override(store, run_id, 1, "reject")
    assert selected(store, run_id) == [2, 3, 6]
    set_override(store, run_id, 3, None)
    set_override(store, run_id, 1, None)
    assert selected(store, run_id) == before


def test_override_refuses_bad_values_and_unknown_samples(store_run: tuple[Store, int]) -> None:
    store, run_id = store_run
    with pytest.raises(ValueError, match="accept, reject"):
        set_override(store, run_id, 1, "maybe")
    with pytest.raises(LookupError, match="no decision for sample 999"):
        set_override(store, run_id, 999, "accept")
    # the failed statement rolled back; the store still works
    assert store.query("SELECT count(*) FROM decisions WHERE override IS NOT NULL") == [(0,)]


def test_browse_filters_sort_and_pages(store_run: tuple[Store, int]) -> None:
    store, run_id = store_run
    table, total = browse_page(store, run_id, BrowseFilter(), limit=4)
    assert total == 6 and table.num_rows == 4
    assert table.column("id").to_pylist() == [1, 2, 3, 4]
    table, total = browse_page(store, run_id, BrowseFilter(), limit=4, offset=4)
    assert total == 6 and table.column("id").to_pylist() == [5, 6]

    table, total = browse_page(store, run_id, BrowseFilter(branch="QA"), limit=10)
    assert total == 2 and set(table.column("branch").to_pylist()) == {"QA"}

    table, total = browse_page(store, run_id, BrowseFilter(outcome="kept"), limit=10)
    assert table.column("id").to_pylist() == [1, 2, 6]
    table, _ = browse_page(store, run_id, BrowseFilter(sort="ifd ori", descending=True), 10)
    ifds = table.column("ifd ori").to_pylist()
    assert ifds == sorted(ifds, reverse=True)

    table, total = browse_page(store, run_id, BrowseFilter(text="PLANET"), limit=10)
    assert table.column("id").to_pylist() == [1]
    # LIKE wildcards in the search are literal characters
    _, total = browse_page(store, run_id, BrowseFilter(text="%"), limit=10)
    assert total == 0

    set_override(store, run_id, 4, "accept")
    table, _ = browse_page(store, run_id, BrowseFilter(outcome="overridden"), limit=10)
    assert table.column("id").to_pylist() == [4]
    assert table.column("override").to_pylist() == ["accept"]
    assert table.column("kept").to_pylist() == [True]


def test_browse_rejects_unknown_filters(store_run: tuple[Store, int]) -> None:
    store, run_id = store_run
    for bad in (BrowseFilter(branch="X"), BrowseFilter(outcome="some"), BrowseFilter(sort="y")):
        with pytest.raises(ValueError):
            browse_page(store, run_id, bad, limit=10)


def test_sample_detail_has_every_version_with_scores_and_critique(
    store_run: tuple[Store, int],
) -> None:
    store, run_id = store_run
    d = sample_detail(store, run_id, 1)
    assert d.branch == "QA" and d.final_kind == "QA" and d.kept
    assert set(d.versions) == {"ori", "Q", "QA"}
    assert d.versions["ori"].instruction == "Name the largest planet in the solar system."
    assert d.versions["QA"].ifd == pytest.approx(0.81)
    assert d.versions["QA"].rifd == pytest.approx(0.48)
    assert d.versions["Q"].critique and "Q version" in d.versions["Q"].critique
    assert d.reflected_kinds() == ["QA", "Q"]
    set_override(store, run_id, 1, "reject")
    assert not sample_detail(store, run_id, 1).kept
    with pytest.raises(LookupError):
        sample_detail(store, run_id, 12345)


def test_word_diff_marks_removed_and_added_words() -> None:
    left, right = word_diff("Name the largest planet.", "Explain which planet is the largest.")
    assert "".join(t for t, _ in left) == "Name the largest planet."
    assert "".join(t for t, _ in right) == "Explain which planet is the largest."
    # the longest common run, " the largest", stays unmarked on both sides
    assert left == [("Name", True), (" the largest", False), (" planet", True), (".", False)]
    assert right == [("Explain which planet is", True), (" the largest.", False)]
    same_left, same_right = word_diff("same text", "same text")
    assert same_left == same_right == [("same text", False)]


def test_distributions_follow_the_decisions_and_overrides(store_run: tuple[Store, int]) -> None:
    store, run_id = store_run
    d = score_distributions(store, run_id)
    assert d.decided == 6 and d.kept == 3
    assert len(d.ifd_ori) == len(d.ifd_q) == 6
    assert sorted(d.ifd_kept) == pytest.approx(sorted([0.81, 0.74, 0.45]))
    set_override(store, run_id, 5, "accept")
    assert score_distributions(store, run_id).kept == 4


def test_the_engine_side_and_the_cli_load_no_textual() -> None:
    code = (
        "import sys, srt_local.review, srt_local.cli\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'tui')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
