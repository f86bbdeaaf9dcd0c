"""The paper profile through the run engine (fakes): the merge stage, its provenance, the merged
original as the method's base, and over-long requests as final failures, never eternal."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from srt_local.config import ModelsConfig, load_models
from srt_local.importer import import_dataset
from srt_local.pairs import Pair
from srt_local.pipeline import RunSummary, run_pipeline
from srt_local.review import sample_detail
from srt_local.run.protocols import Reflector, Scorer
from srt_local.run.repository import RunRepository, RunRow, RunSettings
from srt_local.run.vocabulary import Kind, Profile, RunStatus
from srt_local.store import Store
from tests.fakes import (
    OK,
    PARSE_FAILED,
    TOO_LONG,
    FakeReflector,
    FakeScorer,
    Score,
    better,
    merged,
    q_of,
)

WITH_INPUT = Pair("Add the numbers.", "2 3 4", "9")
PLAIN = Pair("Name a primary colour.", "", "Red.")


@pytest.fixture(scope="module")
def config() -> ModelsConfig:
    return load_models()


def settings(repo: RunRepository, profile: Profile, emit_unreflected: bool = False) -> RunSettings:
    return RunSettings(
        dataset_id=repo.find_dataset("d"),
        teacher_name="auto",
        student_name="fake-student",
        student_sha256="0" * 64,
        template="vicuna",
        max_tokens=2048,
        sample_limit=None,
        emit_unreflected=emit_unreflected,
        full_grid=False,
        profile=profile,
    )


def make_store(tmp_path: Path, pairs: list[Pair]) -> tuple[Store, RunRepository]:
    data = tmp_path / "d.jsonl"
    data.write_text(
        "".join(
            json.dumps({"instruction": p.instruction, "input": p.input, "output": p.output}) + "\n"
            for p in pairs
        )
    )
    store = Store.open(tmp_path / "s.duckdb")
    import_dataset(store, data, name="d")
    return store, RunRepository(store)


def execute(
    store: Store, run_id: int, config: ModelsConfig, reflector: FakeReflector, scorer: FakeScorer
) -> RunSummary:
    async def make_reflector(_run: RunRow, _log: Callable[[str], None]) -> Reflector:
        return reflector

    async def make_scorer(_run: RunRow) -> Scorer:
        return scorer

    return run_pipeline(
        store, run_id, config, reflector_factory=make_reflector, scorer_factory=make_scorer
    )


def test_paper_merges_the_input_and_reflects_the_merged_original(
    tmp_path: Path, config: ModelsConfig
) -> None:
    store, repo = make_store(tmp_path, [WITH_INPUT, PLAIN])
    run_id = repo.create_run(settings(repo, Profile.PAPER, emit_unreflected=True), {})
    m = merged(WITH_INPUT)
    # IFD does not rise with Q and r-IFD does not fall with A: the merged original is final.
    table: dict[Pair, Score] = {m: (0.6, 0.5), q_of(m): (0.4, 0.4), better(m): (0.6, 0.9)}
    reflector, scorer = FakeReflector(), FakeScorer(table)
    summary = execute(store, run_id, config, reflector, scorer)
    assert summary.status == RunStatus.DONE

    asked = [(a.stage, a.pair) for a in reflector.asked]
    assert ("merge", WITH_INPUT) in asked and ("instruction", m) in asked
    assert ("response", m) in asked  # A is made from the merged original
    assert not any(s == "merge" for s, p in asked if p == PLAIN)  # no input: nothing to merge
    assert WITH_INPUT not in scorer.scored and m in scorer.scored  # M is scored, not ori

    key = repo.load_run(run_id).teacher_key
    rows = store.query(
        "SELECT v.instruction, v.input, v.output, c.stage, c.source_kind FROM versions v "
        "JOIN teacher_calls c USING (call_id) WHERE v.kind = 'M' AND v.teacher_key = ?",
        [key],
    )
    assert rows == [(m.instruction, "", m.output, "merge", "ori")]  # with its provenance
    assert store.query("SELECT count(*) FROM versions WHERE kind = 'ori'")[0][0] == 2
    final = store.query(
        "SELECT d.branch, d.final_kind, sel.instruction, sel.input FROM decisions d "
        "JOIN samples s USING (sample_id) JOIN selection sel USING (run_id, sample_id) "
        "WHERE s.input <> ''"
    )
    assert final == [("ori", "M", m.instruction, "")]
    assert store.query("SELECT profile FROM runs WHERE run_id = ?", [run_id]) == [("paper",)]

    # Browse shows the merged original next to the imported one.
    sid = store.query("SELECT sample_id FROM samples WHERE input <> ''")[0][0]
    detail = sample_detail(store, run_id, sid)
    assert detail.merged is not None and detail.base is detail.merged
    assert (detail.merged.instruction, detail.merged.input) == (m.instruction, "")
    assert detail.versions["ori"].input == WITH_INPUT.input
    assert "M" not in detail.reflected_kinds()


def test_default_profile_never_merges(tmp_path: Path, config: ModelsConfig) -> None:
    store, repo = make_store(tmp_path, [WITH_INPUT])
    run_id = repo.create_run(settings(repo, Profile.DEFAULT), {})
    reflector = FakeReflector()
    execute(store, run_id, config, reflector, FakeScorer())
    assert {a.stage for a in reflector.asked} <= {"instruction", "response"}
    assert ("instruction", WITH_INPUT) in [(a.stage, a.pair) for a in reflector.asked]


def test_a_failed_merge_leaves_the_original_as_base(tmp_path: Path, config: ModelsConfig) -> None:
    store, repo = make_store(tmp_path, [WITH_INPUT])
    run_id = repo.create_run(settings(repo, Profile.PAPER), {})
    reflector = FakeReflector(lambda stage, _p: PARSE_FAILED if stage == "merge" else OK)
    summary = execute(store, run_id, config, reflector, FakeScorer())
    assert summary.status == RunStatus.DONE
    assert ("instruction", WITH_INPUT) in [(a.stage, a.pair) for a in reflector.asked]
    assert store.query("SELECT kind, outcome FROM reflection_failures") == [("M", "parse_failed")]
    # Resumed, the failed merge is not asked again.
    again = FakeReflector()
    execute(store, run_id, config, again, FakeScorer())
    assert again.asked == []


def test_profiles_name_different_runs(tmp_path: Path) -> None:
    _store, repo = make_store(tmp_path, [PLAIN])
    default = repo.create_run(settings(repo, Profile.DEFAULT), {"full_grid": False})
    paper = repo.create_run(settings(repo, Profile.PAPER), {"full_grid": False})
    assert repo.find_run(settings(repo, Profile.DEFAULT)) == default
    assert repo.find_run(settings(repo, Profile.PAPER)) == paper
    assert repo.load_run(paper).profile is Profile.PAPER


def test_an_over_long_request_is_a_final_failure_not_an_endless_wait(
    tmp_path: Path, config: ModelsConfig
) -> None:
    store, repo = make_store(tmp_path, [PLAIN, Pair("Long one.", "", "x" * 50)])
    run_id = repo.create_run(settings(repo, Profile.DEFAULT), {})
    reflector = FakeReflector(lambda _s, p: TOO_LONG if p.output.startswith("x") else OK)
    summary = execute(store, run_id, config, reflector, FakeScorer())
    assert summary.status == RunStatus.DONE  # not incomplete: nothing is left for a rerun
    assert store.query("SELECT kind, outcome FROM reflection_failures ORDER BY kind") == [
        (Kind.A, "too_long"),
        (Kind.Q, "too_long"),
    ]
    assert store.query("SELECT count(*) FROM decisions")[0][0] == 2


def test_the_paper_profile_opens_every_teacher_with_the_reference_rules(
    config: ModelsConfig,
) -> None:
    from srt_local.config import for_run

    paper = for_run(config, "paper", "mine")
    for spec in paper.teachers.values():
        assert (spec.max_attempts, spec.reask, spec.trim, spec.prompts) == (
            2,
            "greedy",
            "reference",
            "mine",
        )
    assert for_run(config, "default", None).teachers == config.teachers
