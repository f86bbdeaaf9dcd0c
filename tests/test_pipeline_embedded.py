"""End to end on the embedded default: the SmolLM2 teacher and the Gemma student, a few samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from srt_local.config import load_models
from srt_local.importer import import_dataset
from srt_local.pipeline import RunOptions, prepare_run, run_pipeline
from srt_local.store import Store
from srt_local.teachers import OUTCOMES

PAIRS = [
    {
        "instruction": "Name the largest planet in the solar system.",
        "input": "",
        "output": "Jupiter.",
    },
    {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour."},
    {
        "instruction": "Give one tip for sleeping better.",
        "input": "",
        "output": "Keep a regular bedtime.",
    },
]


@pytest.fixture(scope="module")
def reflected_store(
    tmp_path_factory: pytest.TempPathFactory, gemma_gguf: Path, smollm_gguf: Path
) -> tuple[Store, int]:
    tmp = tmp_path_factory.mktemp("e2e")
    data = tmp / "tiny.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    store = Store.open(tmp / "srt.duckdb")
    import_dataset(store, data, name="tiny")
    config = load_models()
    run_id = prepare_run(
        store, RunOptions(dataset="tiny", teacher="smollm2-135m-chat", full_grid=True), config
    )
    summary = run_pipeline(store, run_id, config)
    assert summary.status == "done"
    assert summary.kept + summary.rejected == len(PAIRS)
    return store, run_id


def test_every_sample_is_decided_with_provenance(reflected_store: tuple[Store, int]) -> None:
    store, run_id = reflected_store
    rows = store.query_dicts(
        "SELECT * FROM decisions WHERE run_id = ? ORDER BY sample_id", [run_id]
    )
    assert len(rows) == len(PAIRS)
    for row in rows:
        assert row["branch"] in ("QA", "Q", "A", "ori")
        assert row["reason"]
        if row["passes"]:
            assert row["ifd_final"] < 1 and row["rifd_final"] < 1
    calls = store.query_dicts("SELECT * FROM teacher_calls")
    assert calls, "the embedded teacher was called"
    for call in calls:
        assert call["teacher_name"] == "smollm2-135m-chat"
        assert call["backend"] == "llamacpp"
        assert call["prompt_version"] and call["messages"] and call["options"]
        assert call["outcome"] in OUTCOMES
    # every ok reply made exactly one version
    made = store.query("SELECT count(*) FROM versions WHERE call_id IS NOT NULL")[0][0]
    ok = store.query("SELECT count(*) FROM teacher_calls WHERE outcome = 'ok'")[0][0]
    assert made == ok
    run = store.query_dicts("SELECT * FROM runs WHERE run_id = ?", [run_id])[0]
    assert run["status"] == "done" and run["teacher_key"]
    assert json.loads(run["config"])["resolved_teacher"] == "smollm2-135m-chat"
    # the scores name the student file, template and truncation they came from
    scored = store.query("SELECT DISTINCT student_sha256, template, max_tokens FROM scores")
    assert scored == [(run["student_sha256"], "vicuna", 2048)]


def test_selection_view_matches_emitted_decisions(reflected_store: tuple[Store, int]) -> None:
    store, run_id = reflected_store
    emitted = store.query("SELECT count(*) FROM decisions WHERE run_id = ? AND emitted", [run_id])
    selected = store.query("SELECT count(*) FROM selection WHERE run_id = ?", [run_id])
    assert emitted == selected


def test_rerun_of_a_finished_run_does_nothing(reflected_store: tuple[Store, int]) -> None:
    store, run_id = reflected_store
    config = load_models()
    again = prepare_run(
        store, RunOptions(dataset="tiny", teacher="smollm2-135m-chat", full_grid=True), config
    )
    assert again == run_id
    before = store.query("SELECT count(*) FROM teacher_calls")[0][0]
    summary = run_pipeline(store, again, config)
    assert summary.status == "done" and summary.teacher_calls == 0
    assert store.query("SELECT count(*) FROM teacher_calls")[0][0] == before


def test_a_new_student_makes_no_teacher_call(reflected_store: tuple[Store, int]) -> None:
    store, run_id = reflected_store
    config = load_models()
    before = store.query("SELECT count(*) FROM teacher_calls")[0][0]
    other = prepare_run(
        store,
        RunOptions(
            dataset="tiny", teacher="smollm2-135m-chat", student="smollm2-135m", full_grid=True
        ),
        config,
    )
    assert other != run_id
    summary = run_pipeline(store, other, config)
    assert summary.status == "done"
    assert summary.teacher_calls == 0
    assert store.query("SELECT count(*) FROM teacher_calls")[0][0] == before
    n = store.query("SELECT count(*) FROM decisions WHERE run_id = ?", [other])[0][0]
    assert n == len(PAIRS)
