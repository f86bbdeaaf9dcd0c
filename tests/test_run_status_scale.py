"""run_status counts the run's samples only, whether their ids are one range or not."""

from __future__ import annotations

from pathlib import Path

import pytest

from srt_local.run_status import run_status
from srt_local.store import Store


def build(db: Path, ids_by_dataset: dict[int, list[int]]) -> Store:
    store = Store.open(db)
    for dataset_id, ids in ids_by_dataset.items():
        store.query(
            "INSERT INTO datasets (dataset_id, name, source_path, source_sha256, format, "
            "n_records, n_imported, n_duplicates, n_rejected, n_turns_skipped) "
            "VALUES (?, ?, 'x', 'x', 'alpaca', 0, 0, 0, 0, 0)",
            [dataset_id, f"d{dataset_id}"],
        )
        for position, sample_id in enumerate(ids):
            store.query(
                "INSERT INTO samples (sample_id, dataset_id, position, location, instruction, "
                "input, output, pair_hash) VALUES (?, ?, ?, 'line 1', 'Q', '', 'A', ?)",
                [sample_id, dataset_id, position, f"h{sample_id}"],
            )
            for kind in ("Q", "QA"):
                store.query(
                    "INSERT INTO versions (sample_id, teacher_key, kind, instruction, input, "
                    "output, pair_hash) VALUES (?, 'k', ?, 'Q', '', 'A', ?)",
                    [sample_id, kind, f"{kind}{sample_id}"],
                )
            store.query(
                "INSERT INTO teacher_calls (sample_id, stage, source_kind, teacher_key, attempt, "
                "teacher_name, backend, model, prompt_version, output_mode, messages, outcome, "
                "error_kind) VALUES (?, 'instruction', 'ori', 'k', 1, 't', 'b', 'm', 'v', 'json', "
                "'[]', 'error', ?)",
                [sample_id, "timeout" if sample_id % 2 else None],
            )
    store.query(
        "INSERT INTO runs (run_id, dataset_id, teacher_name, teacher_key, student_name, "
        "student_sha256, template, max_tokens, sample_limit, emit_unreflected, config, status) "
        "VALUES (1, 1, 't', 'k', 's', 'sha', 'vicuna', 2048, NULL, false, '{}', 'done')"
    )
    return store


@pytest.mark.parametrize(
    "layout",
    [
        {1: [1, 2, 3], 2: [4, 5]},  # one range of ids: the range filter
        {1: [1, 2, 5], 2: [3, 4]},  # interleaved: the semi-join
    ],
)
def test_status_counts_only_the_runs_samples(tmp_path: Path, layout: dict[int, list[int]]) -> None:
    with build(tmp_path / "s.duckdb", layout) as store:
        st = run_status(store, 1)
    assert st.samples == 3
    assert st.stages["instruction reflection"] == 3
    assert st.stages["response reflection"] == 3
    assert st.teacher_calls == 3
    odd = sum(1 for i in layout[1] if i % 2)
    assert st.failures == {"teacher call: timeout": odd}
