"""The run engine on a fake teacher and a fake student: every branch, failures, resume, width.

Stores are built through the importer and the run repository, as `srt run` builds them; each test
takes milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from srt_local.config import ModelsConfig, load_models
from srt_local.importer import import_dataset
from srt_local.pairs import Pair
from srt_local.pipeline import RunProgress, RunSummary, run_pipeline
from srt_local.run import progress
from srt_local.run.context import open_context
from srt_local.run.protocols import Reflector, Scorer
from srt_local.run.repository import RunRepository, RunRow, RunSettings
from srt_local.run.vocabulary import Kind, RunStatus, Stage
from srt_local.run_status import run_status
from srt_local.store import Store
from srt_local.teachers.base import ReflectResult, TeacherError
from tests.fakes import (
    FATAL,
    OK,
    PARSE_FAILED,
    UNAVAILABLE,
    FakeReflector,
    FakeScorer,
    Score,
    better,
    q_of,
)

PAIRS = [Pair(f"Task number {i}.", "", f"Answer {i}.") for i in range(8)]


@pytest.fixture(scope="module")
def config() -> ModelsConfig:
    return load_models()


def make_run(
    tmp_path: Path,
    pairs: list[Pair] = PAIRS,
    *,
    emit_unreflected: bool = False,
    full_grid: bool = False,
    concurrency: int | None = None,
) -> tuple[Store, int]:
    """A store holding `pairs` as dataset 'd' and a new run over it, as `prepare_run` makes one."""
    data = tmp_path / "d.jsonl"
    data.write_text(
        "".join(
            json.dumps({"instruction": p.instruction, "input": p.input, "output": p.output}) + "\n"
            for p in pairs
        )
    )
    store = Store.open(tmp_path / "s.duckdb")
    import_dataset(store, data, name="d")
    repo = RunRepository(store)
    settings = RunSettings(
        dataset_id=repo.find_dataset("d"),
        teacher_name="auto",
        student_name="fake-student",
        student_sha256="0" * 64,
        template="vicuna",
        max_tokens=2048,
        sample_limit=None,
        emit_unreflected=emit_unreflected,
        full_grid=full_grid,
    )
    options = {"full_grid": full_grid, "concurrency": concurrency}
    return store, repo.create_run(settings, options)


def execute(
    store: Store,
    run_id: int,
    config: ModelsConfig,
    reflector: FakeReflector,
    scorer: FakeScorer,
    progress: Callable[[RunProgress], None] | None = None,
    stop: threading.Event | None = None,
) -> RunSummary:
    async def make_reflector(_run: RunRow, _log: Callable[[str], None]) -> Reflector:
        return reflector

    async def make_scorer(_run: RunRow) -> Scorer:
        return scorer

    return run_pipeline(
        store,
        run_id,
        config,
        progress=progress,
        stop=stop,
        reflector_factory=make_reflector,
        scorer_factory=make_scorer,
    )


def decisions(store: Store, run_id: int) -> dict[str, tuple[str, bool]]:
    """Original instruction -> (branch, emitted)."""
    rows = store.query(
        "SELECT s.instruction, d.branch, d.emitted FROM decisions d JOIN samples s "
        "USING (sample_id) WHERE d.run_id = ?",
        [run_id],
    )
    return {ins: (branch, bool(emitted)) for ins, branch, emitted in rows}


def branch_table(pair: Pair, branch: str) -> dict[Pair, Score]:
    """Scores that lead `pair` down `branch` (all final versions pass IFD < 1, r-IFD < 1)."""
    q = q_of(pair)
    a, qa = better(pair), better(q)
    if branch == "QA":
        return {pair: (0.5, 0.6), q: (0.7, 0.6), qa: (0.8, 0.4)}
    if branch == "Q":
        return {pair: (0.5, 0.6), q: (0.7, 0.6), qa: (0.8, 0.9)}
    if branch == "A":
        return {pair: (0.7, 0.6), q: (0.5, 0.6), a: (0.8, 0.4)}
    return {pair: (0.7, 0.6), q: (0.5, 0.6), a: (0.8, 0.9)}


BRANCHES = {PAIRS[0]: "QA", PAIRS[1]: "Q", PAIRS[2]: "A", PAIRS[3]: "ori"}


def all_branches() -> FakeScorer:
    table: dict[Pair, Score] = {}
    for pair, branch in BRANCHES.items():
        table.update(branch_table(pair, branch))
    return FakeScorer(table)


# ---------------------------------------------------------------- the method


def test_every_branch_and_what_is_emitted(tmp_path: Path, config: ModelsConfig) -> None:
    store, run_id = make_run(tmp_path, list(BRANCHES))
    reflector = FakeReflector()
    summary = execute(store, run_id, config, reflector, all_branches())
    assert summary.status == "done"
    assert decisions(store, run_id) == {
        PAIRS[0].instruction: ("QA", True),
        PAIRS[1].instruction: ("Q", False),  # response unreflected: not emitted by default
        PAIRS[2].instruction: ("A", True),
        PAIRS[3].instruction: ("ori", False),
    }
    assert summary.by_branch == {"QA": 1, "Q": 1, "A": 1, "ori": 1}
    assert (summary.kept, summary.rejected) == (2, 2)
    # One instruction and one response reflection per sample, the response of the chosen branch.
    assert summary.teacher_calls == 8
    responses = [a.pair for a in reflector.asked if a.stage == "response"]
    assert set(responses) == {q_of(PAIRS[0]), q_of(PAIRS[1]), PAIRS[2], PAIRS[3]}
    assert reflector.closed
    kinds = store.query("SELECT kind, count(*) FROM versions GROUP BY ALL ORDER BY ALL")
    assert kinds == [("A", 2), ("Q", 4), ("QA", 2), ("ori", 4)]
    assert store.query("SELECT status FROM runs")[0][0] == "done"


def test_emit_unreflected_emits_the_q_branch(tmp_path: Path, config: ModelsConfig) -> None:
    store, run_id = make_run(tmp_path, list(BRANCHES), emit_unreflected=True)
    summary = execute(store, run_id, config, FakeReflector(), all_branches())
    got = decisions(store, run_id)
    assert got[PAIRS[1].instruction] == ("Q", True)
    assert got[PAIRS[3].instruction] == ("ori", True)
    assert summary.kept == 4


def test_full_grid_reflects_both_responses(tmp_path: Path, config: ModelsConfig) -> None:
    store, run_id = make_run(tmp_path, list(BRANCHES), full_grid=True)
    reflector = FakeReflector()
    execute(store, run_id, config, reflector, all_branches())
    kinds = store.query("SELECT kind, count(*) FROM versions GROUP BY ALL ORDER BY ALL")
    assert kinds == [("A", 4), ("Q", 4), ("QA", 4), ("ori", 4)]
    assert len(reflector.asked) == 12
    # The decisions are those of the reference rule: the extra versions change nothing.
    assert {k: v[0] for k, v in decisions(store, run_id).items()} == {
        p.instruction: b for p, b in BRANCHES.items()
    }


def test_failed_reflection_is_final(tmp_path: Path, config: ModelsConfig) -> None:
    store, run_id = make_run(tmp_path, PAIRS[:3])
    bad = PAIRS[0]

    def rule(stage: str, pair: Pair) -> str:
        return PARSE_FAILED if stage == "instruction" and pair == bad else OK

    summary = execute(store, run_id, config, FakeReflector(rule), FakeScorer())
    assert summary.status == "done"
    assert summary.failures == {"reflection Q: parse_failed": 1}
    assert store.query("SELECT kind, outcome FROM reflection_failures") == [("Q", "parse_failed")]
    # `srt status` names it the same way.
    assert run_status(store, run_id).failures == summary.failures
    branch, _ = decisions(store, run_id)[bad.instruction]
    assert branch in ("A", "ori")  # the original instruction stays
    # A resumed (here: re-requested) run never asks again for what failed for good.
    again = FakeReflector(rule)
    assert execute(store, run_id, config, again, FakeScorer()).status == "done"
    assert again.asked == []


def test_transport_errors_leave_the_sample_for_the_next_run(
    tmp_path: Path, config: ModelsConfig
) -> None:
    store, run_id = make_run(tmp_path, PAIRS[:3])
    flaky = PAIRS[1]

    def rule(stage: str, pair: Pair) -> str:
        return UNAVAILABLE if pair == flaky else OK

    summary = execute(store, run_id, config, FakeReflector(rule), FakeScorer())
    assert summary.status == "incomplete"
    assert summary.failures == {"teacher call: timeout": 1}
    assert flaky.instruction not in decisions(store, run_id)
    assert store.query("SELECT count(*) FROM reflection_failures")[0][0] == 0
    calls = store.query("SELECT outcome, error_kind, count(*) FROM teacher_calls GROUP BY ALL")
    assert ("error", "timeout", 2) in calls  # the failed requests are kept
    assert store.query("SELECT status FROM runs")[0][0] == "incomplete"

    retry = FakeReflector()
    summary = execute(store, run_id, config, retry, FakeScorer())
    assert summary.status == "done"
    assert {a.pair for a in retry.asked} <= {flaky, q_of(flaky), better(flaky), better(q_of(flaky))}
    assert retry.asked[0].pair == flaky
    assert len(decisions(store, run_id)) == 3


def test_fatal_teacher_error_fails_the_run_and_keeps_the_calls(
    tmp_path: Path, config: ModelsConfig
) -> None:
    store, run_id = make_run(tmp_path, PAIRS[:1])
    with pytest.raises(TeacherError, match="gone"):
        execute(store, run_id, config, FakeReflector(lambda _s, _p: FATAL), FakeScorer())
    status, error = store.query("SELECT status, error FROM runs")[0]
    assert (status, error) == ("failed", "the fake teacher is gone")
    sample_id = store.query("SELECT sample_id FROM samples")[0][0]
    assert store.query("SELECT sample_id, source_kind, outcome FROM teacher_calls") == [
        (sample_id, "ori", "error")
    ]
    assert store.query("SELECT count(*) FROM decisions")[0][0] == 0


class _SlowOk(FakeReflector):
    """Fatal at once for `doomed`; every other request answers after a while."""

    def __init__(self, doomed: Pair) -> None:
        super().__init__(lambda _s, p: FATAL if p == doomed else OK)
        self.doomed = doomed

    async def reflect(self, stage: str, pair: Pair) -> ReflectResult:
        if pair != self.doomed:
            await asyncio.sleep(0.05)
        return await super().reflect(stage, pair)


def test_a_fatal_error_lets_the_requests_in_flight_finish_and_be_stored(
    tmp_path: Path, config: ModelsConfig
) -> None:
    store, run_id = make_run(tmp_path, PAIRS[:2])
    reflector = _SlowOk(PAIRS[0])
    with pytest.raises(TeacherError, match="gone"):
        execute(store, run_id, config, reflector, FakeScorer())
    # The other sample's reply came after the error, and is stored all the same.
    outcomes = sorted(r[0] for r in store.query("SELECT outcome FROM teacher_calls"))
    assert outcomes == ["error", "ok"]
    assert store.query("SELECT count(*) FROM versions WHERE kind = 'Q'")[0][0] == 1
    assert store.query("SELECT status FROM runs")[0][0] == "failed"


def test_unscorable_version_is_named_in_the_reason(tmp_path: Path, config: ModelsConfig) -> None:
    store, run_id = make_run(tmp_path, PAIRS[:1])
    scorer = FakeScorer({q_of(PAIRS[0]): "target_truncated"})
    execute(store, run_id, config, FakeReflector(), scorer)
    reason = store.query("SELECT reason FROM decisions")[0][0]
    assert "score target_truncated" in reason


# ---------------------------------------------------------------- resume and width


def test_resume_after_stop_repeats_no_call_and_no_decision(
    tmp_path: Path, config: ModelsConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "EMIT_EVERY", 0.0)
    store, run_id = make_run(tmp_path, PAIRS)
    stop = threading.Event()

    def stop_after_three(p: RunProgress) -> None:
        if p.stages[-1].done >= 3:
            stop.set()

    first = FakeReflector(delay=0.002)
    summary = execute(store, run_id, config, first, FakeScorer(), stop_after_three, stop)
    assert summary.status == "paused"
    assert store.query("SELECT status FROM runs")[0][0] == "paused"
    decided_first = store.query("SELECT count(*) FROM decisions")[0][0]
    assert 3 <= decided_first < len(PAIRS)

    seen: list[RunProgress] = []
    second = FakeReflector()
    summary = execute(store, run_id, config, second, FakeScorer(), seen.append)
    assert summary.status == "done"
    assert store.query("SELECT count(*) FROM decisions")[0][0] == len(PAIRS)
    # The second execution decided exactly the samples the first left.
    last = seen[-1].stages[-1]
    assert last.done == len(PAIRS)
    assert summary.by_branch and sum(summary.by_branch.values()) == len(PAIRS)
    # Every reflection was answered once over both executions: nothing stored was asked again.
    answered = [(a.stage, a.pair) for a in first.asked + second.asked]
    stored_calls = store.query("SELECT count(*) FROM teacher_calls")[0][0]
    assert len(answered) == stored_calls == 2 * len(PAIRS)
    assert len(set(answered)) == len(answered)


def test_a_done_run_reports_done_without_work(tmp_path: Path, config: ModelsConfig) -> None:
    store, run_id = make_run(tmp_path, PAIRS[:2])
    execute(store, run_id, config, FakeReflector(), FakeScorer())
    again, scorer = FakeReflector(), FakeScorer()
    summary = execute(store, run_id, config, again, scorer)
    assert summary.status == "done"
    assert again.asked == [] and scorer.scored == []
    assert sum(summary.by_branch.values()) == 2


def test_resumed_run_is_as_wide_as_a_new_one(tmp_path: Path, config: ModelsConfig) -> None:
    store, run_id = make_run(tmp_path, PAIRS)
    repo = RunRepository(store)
    # A run that ran before: its teacher key is stored, so nothing opened the teacher yet.
    repo.set_teacher(repo.load_run(run_id), "fake-key", "fake-teacher")
    reflector = FakeReflector(concurrency=3, delay=0.01)
    execute(store, run_id, config, reflector, FakeScorer())
    assert reflector.max_in_flight == 2 * 3


async def test_context_opens_the_teacher_before_sizing_the_workers(
    tmp_path: Path,
) -> None:
    store, run_id = make_run(tmp_path, PAIRS[:1])
    repo = RunRepository(store)
    run = repo.set_teacher(repo.load_run(run_id), "fake-key", "fake-teacher")
    opened: list[str] = []

    async def make_reflector(r: RunRow, _log: Callable[[str], None]) -> Reflector:
        opened.append(r.teacher_to_open)
        return FakeReflector(concurrency=4)

    async def make_scorer(_r: RunRow) -> Scorer:
        return FakeScorer()

    context = await open_context(run, make_reflector, make_scorer, lambda _m: None)
    assert opened == ["fake-teacher"]
    assert context.workers == 8
    assert context.teacher_key == "fake-key"
    await context.aclose()


def test_a_concurrency_setting_sizes_the_workers(tmp_path: Path, config: ModelsConfig) -> None:
    store, run_id = make_run(tmp_path, PAIRS, concurrency=1)
    reflector = FakeReflector(concurrency=4, delay=0.01)
    execute(store, run_id, config, reflector, FakeScorer())
    assert reflector.max_in_flight == 2


def test_vocabulary_keeps_the_stored_strings(tmp_path: Path) -> None:
    assert Kind.QA == "QA" and f"{RunStatus.INCOMPLETE}" == "incomplete"
    store, run_id = make_run(tmp_path, PAIRS[:1])
    RunRepository(store).set_status(run_id, RunStatus.INCOMPLETE)
    assert store.query("SELECT status, finished_at IS NOT NULL FROM runs") == [("incomplete", True)]


def test_progress_is_throttled_and_estimates_the_rest() -> None:
    now = [100.0]
    seen: list[RunProgress] = []
    tracker = progress.ProgressTracker(
        7, 10, 2, seen.append, tokens=lambda: 500, clock=lambda: now[0]
    )
    now[0] = 102.0
    tracker.add_calls(4)
    tracker.advance(Stage.DECISION)  # first report goes out
    now[0] = 102.1
    tracker.advance(Stage.DECISION)  # within 0.25 s: held back
    assert len(seen) == 1
    tracker.fail(Stage.DECISION, "teacher call: timeout")
    tracker.emit(force=True)
    last = seen[-1]
    decision = last.stages[-1]
    assert (decision.done, decision.failed) == (4, {"teacher call: timeout": 1})
    assert last.tokens_per_s == pytest.approx(500 / 2.1)
    assert last.calls_per_s == pytest.approx(4 / 2.1)
    # 2 decided in 2.1 s, 5 left (10 - 4 done - 1 abandoned)
    assert last.eta_s == pytest.approx(5 * 2.1 / 2)
    assert tracker.failures() == {"teacher call: timeout": 1}
