"""A run against the Ollama test server when the server misbehaves: one sample's 400 fails that
sample, a lasting 500 pauses the run with its cause, and the same run resumes when it is fixed.

The student is the real Gemma GGUF (a few seconds); the teacher is tests/ollama_server.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from srt_local.config import load_models
from srt_local.importer import import_dataset
from srt_local.pipeline import RunOptions, prepare_run, run_pipeline
from srt_local.store import Store
from srt_local.teachers import TeacherServerDown
from tests.ollama_server import Error, OllamaTestServer

PAIRS = [
    {"instruction": "List three primary colours.", "input": "", "output": "Red, blue, yellow."},
    {"instruction": "What is 12 times 12?", "input": "", "output": "144."},
    {"instruction": "Why is the sky blue?", "input": "", "output": "Rayleigh scattering."},
]
OOM = "llama runner process has terminated: cudaMalloc failed: out of memory"


@pytest.fixture
def store(tmp_path: Path, gemma_gguf: Path) -> Store:
    data = tmp_path / "three.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    store = Store.open(tmp_path / "srt.duckdb")
    import_dataset(store, data, name="three")
    return store


def _run(store: Store) -> tuple[int, object]:
    config = load_models()
    run_id = prepare_run(store, RunOptions(dataset="three", teacher="ollama"), config)
    return run_id, run_pipeline(store, run_id, config)


def test_a_400_on_one_sample_fails_that_sample_not_the_run(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    with OllamaTestServer() as server:
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        server.script(Error(400, "invalid character 'x' in string escape code"))
        run_id, summary = _run(store)
    assert summary.status == "done"  # type: ignore[attr-defined]
    assert store.query("SELECT count(*) FROM decisions WHERE run_id = ?", [run_id])[0][0] == 3
    rejected = store.query(
        "SELECT outcome, error_kind, error_message FROM teacher_calls WHERE outcome <> 'ok'"
    )
    assert [(r[0], r[1]) for r in rejected] == [("rejected", "rejected")]
    assert "invalid character" in rejected[0][2] and "HTTP 400" in rejected[0][2]
    failures = store.query("SELECT kind, outcome FROM reflection_failures")
    assert failures == [("Q", "rejected")]  # final: a rerun does not ask again
    assert len(server.chat_requests) == 6  # 3 samples x 2 stages, no retry of the 400
    store.close()


def test_a_lasting_500_pauses_the_run_with_its_cause_and_it_resumes(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    with OllamaTestServer() as server:
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        server.down(Error(500, OOM))
        with pytest.raises(TeacherServerDown) as info:
            _run(store)
        message = str(info.value)
        assert message.startswith("run 1 paused: stopped after")
        assert OOM in message and "smaller num_ctx" in message and "resumes" in message
        ((status, error),) = store.query("SELECT status, error FROM runs")
        assert status == "paused" and error == message
        failed = store.query("SELECT count(*) FROM teacher_calls WHERE error_kind = 'server_error'")
        # Every request sent is kept with its cause, the other worker's included (it finishes the
        # request it was waiting on, then sends nothing more); no sample's 5 retries are spent.
        assert failed[0][0] == len(server.chat_requests) >= len(info.value.calls) >= 2
        assert 3 <= len(server.chat_requests) <= 4

        server.up()
        run_id, summary = _run(store)
    assert summary.status == "done"  # type: ignore[attr-defined]
    assert store.query("SELECT count(*) FROM runs")[0][0] == 1  # the same run, resumed
    assert store.query("SELECT count(*) FROM decisions WHERE run_id = ?", [run_id])[0][0] == 3
    assert store.query("SELECT count(*) FROM reflection_failures")[0][0] == 0
    store.close()
