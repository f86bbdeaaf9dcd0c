"""Drive a run: find or make it, then reflect, score and decide its samples with asyncio workers.

Teacher calls run on an asyncio loop, `RunContext.workers` samples at once; the student scores in
its own thread, so scoring overlaps with the teacher's writing. Every unit of work is one
transaction (`RunRepository`): a crash or Ctrl-C loses at most the work in flight, and the same
run again continues where it stopped.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from srt_local.bos import score_key, student_uses_bos
from srt_local.config import ModelsConfig
from srt_local.model_files import file_sha256, resolve_gguf
from srt_local.pairs import Pair
from srt_local.prompts import load_prompt_set
from srt_local.run.context import (
    Log,
    ReflectorFactory,
    RunContext,
    ScorerFactory,
    open_context,
    student_factory,
    teacher_factory,
)
from srt_local.run.method import Paused, Reflections, Unavailable, process_sample
from srt_local.run.progress import ProgressTracker, RunProgress
from srt_local.run.repository import RunRepository, RunRow, RunSettings
from srt_local.run.vocabulary import Profile, RunStatus, Stage, call_failure_name
from srt_local.run_owner import claim
from srt_local.store import Store
from srt_local.teachers.base import TeacherError, TeacherServerDown


@dataclass(frozen=True)
class RunOptions:
    dataset: str
    teacher: str = "auto"
    student: str | None = None
    limit: int | None = None
    concurrency: int | None = None
    emit_unreflected: bool = False
    full_grid: bool = False
    profile: str = "default"  # default | paper (vocabulary.Profile)
    prompts: str | None = None  # a prompt set for every teacher of the run (`srt prompts`)


@dataclass
class RunSummary:
    run_id: int
    status: str
    kept: int
    rejected: int
    by_branch: dict[str, int]
    failures: dict[str, int]
    elapsed_s: float
    teacher_calls: int = 0
    teacher: str = ""


def find_dataset(store: Store, name: str) -> int:
    """The id of the dataset called `name`; PipelineError listing the known ones if none."""
    return RunRepository(store).find_dataset(name)


def prepare_run(store: Store, options: RunOptions, config: ModelsConfig) -> int:
    """The run for these settings: the latest one not cancelled (to resume), else a new one."""
    repo = RunRepository(store)
    spec = config.student(options.student or config.defaults.student)
    gguf = resolve_gguf(spec.path, spec.package)
    settings = RunSettings(
        dataset_id=repo.find_dataset(options.dataset),
        teacher_name=options.teacher,
        student_name=spec.name,
        student_sha256=file_sha256(gguf),
        # The scores' key: the template, suffixed where texts start without BOS (srt_local.bos).
        template=score_key(spec.template, student_uses_bos(spec.bos, gguf)),
        max_tokens=spec.max_tokens,
        sample_limit=options.limit,
        emit_unreflected=options.emit_unreflected,
        full_grid=options.full_grid,
        profile=Profile(options.profile),
        prompt_set=options.prompts,
    )
    if options.prompts:
        load_prompt_set(options.prompts)  # fail early on an unknown or broken set
    if options.teacher != "auto":
        config.teacher(options.teacher)  # fail early on an unknown name
    found = repo.find_run(settings)
    if found is not None:
        return found
    return repo.create_run(settings, {**asdict(options), "student_spec": _spec_dict(spec)})


def cancel_run(store: Store, run_id: int) -> None:
    """Mark a run cancelled: it is kept for inspection but never resumed."""
    RunRepository(store).cancel(run_id)


def _spec_dict(spec: Any) -> dict[str, Any]:
    return {
        k: (str(v) if v is not None and not isinstance(v, int | float | str | bool) else v)
        for k, v in asdict(spec).items()
    }


def run_pipeline(
    store: Store,
    run_id: int,
    config: ModelsConfig,
    progress: Callable[[RunProgress], None] | None = None,
    stop: threading.Event | None = None,
    log: Callable[[str], None] | None = None,
    *,
    reflector_factory: ReflectorFactory | None = None,
    scorer_factory: ScorerFactory | None = None,
) -> RunSummary:
    """Execute (or resume) a run to its end, or until `stop` is set; blocking.

    The factories open the teacher and load the student; by default the ones models.toml names.
    """
    repo = RunRepository(store)
    run = repo.load_run(run_id)
    execution = _Execution(
        repo,
        progress,
        log or (lambda _msg: None),
        reflector_factory or teacher_factory(config),
        scorer_factory or student_factory(config, store),
    )
    repo.set_status(run_id, RunStatus.RUNNING)
    claim(store, run_id)  # i9: the owner's PID and host, so a killed run shows as interrupted
    try:
        summary = asyncio.run(execution.execute(run, stop))
    except (KeyboardInterrupt, asyncio.CancelledError):
        repo.set_status(run_id, RunStatus.PAUSED)
        raise
    except TeacherServerDown as exc:
        # A lasting server error: pause with the cause, so the same command resumes once it is fixed.
        paused = TeacherServerDown(f"run {run_id} paused: {exc}", exc.calls)
        repo.set_status(run_id, RunStatus.PAUSED, str(paused))
        raise paused from None
    except Exception as exc:
        repo.set_status(run_id, RunStatus.FAILED, str(exc))
        raise
    repo.set_status(run_id, RunStatus(summary.status))
    return summary


class _Execution:
    """One execution of a run: open what it needs, drive the workers, sum up."""

    def __init__(
        self,
        repo: RunRepository,
        progress: Callable[[RunProgress], None] | None,
        log: Log,
        make_reflector: ReflectorFactory,
        make_scorer: ScorerFactory,
    ) -> None:
        self.repo = repo
        self.progress = progress
        self.log = log
        self.make_reflector = make_reflector
        self.make_scorer = make_scorer

    async def execute(self, run: RunRow, stop: threading.Event | None) -> RunSummary:
        samples = self.repo.samples(run)
        self.repo.store_originals(run.dataset_id)
        opened = None
        if not run.teacher_key:
            # A new run learns its teacher's key (what its versions are stored under) first.
            opened = await self.make_reflector(run, self.log)
            run = self.repo.set_teacher(run, opened.key, opened.name)
        stored = self.repo.stored_work(run.run_id, run.teacher_key, [sid for sid, _ in samples])
        todo = [(sid, pair) for sid, pair in samples if sid not in stored.decided]
        decided = len(samples) - len(todo)
        self.log(
            f"run {run.run_id}: {len(samples)} sample{'s' if len(samples) != 1 else ''}, "
            f"{len(todo)} to decide, "
            f"teacher key {run.teacher_key}"
        )
        if not todo:
            if opened is not None:
                await opened.aclose()
            idle = ProgressTracker(run.run_id, len(samples), decided, self.progress)
            return self.summary(run, RunStatus.DONE, idle, opened.name if opened else None)
        context = await open_context(run, self.make_reflector, self.make_scorer, self.log, opened)
        scorer = context.scorer
        tracker = ProgressTracker(
            run.run_id, len(samples), decided, self.progress, tokens=lambda: scorer.tokens
        )
        # The originals need no teacher: let the student start on them at once.
        scorer.prefetch([pair for _, pair in todo])
        reflections = Reflections(
            context.reflector, self.repo, stored, tracker, context.teacher_key
        )
        try:
            status = await _Workers(context, reflections, tracker, self.repo).run(todo, stop)
        finally:
            await context.aclose()
        return self.summary(run, status, tracker, context.reflector.name)

    def summary(
        self, run: RunRow, status: RunStatus, tracker: ProgressTracker, teacher: str | None
    ) -> RunSummary:
        counts = self.repo.summary_counts(run.run_id)
        return RunSummary(
            run.run_id,
            status,
            counts.kept,
            counts.rejected,
            counts.by_branch,
            tracker.failures(),
            tracker.elapsed(),
            tracker.calls,
            teacher or run.teacher_to_open,
        )


class _Workers:
    """`context.workers` asyncio tasks taking samples from one queue until it is empty or stopped."""

    def __init__(
        self,
        context: RunContext,
        reflections: Reflections,
        tracker: ProgressTracker,
        repo: RunRepository,
    ) -> None:
        self.context = context
        self.reflections = reflections
        self.tracker = tracker
        self.repo = repo
        self.pending: asyncio.Queue[tuple[int, Pair]] = asyncio.Queue()
        self.abandoned = 0
        self.stop: threading.Event | None = None
        self.fatal: TeacherError | None = None  # the first error that stops the run

    async def run(self, todo: list[tuple[int, Pair]], stop: threading.Event | None) -> RunStatus:
        for item in todo:
            self.pending.put_nowait(item)
        self.stop = stop
        workers = [asyncio.create_task(self.worker()) for _ in range(self.context.workers)]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            self.tracker.emit(force=True)
        if self.fatal is not None:
            raise self.fatal
        if self.stopping() and not self.pending.empty():
            return RunStatus.PAUSED
        return RunStatus.INCOMPLETE if self.abandoned else RunStatus.DONE

    def stopping(self) -> bool:
        return self.fatal is not None or (self.stop is not None and self.stop.is_set())

    async def worker(self) -> None:
        # A stop takes no new sample and lets the samples in flight finish the step they are on
        # (a teacher call, a scoring) and store it, so no reply already asked for is thrown away.
        context, tracker = self.context, self.tracker
        while not self.pending.empty() and not self.stopping():
            sid, pair = self.pending.get_nowait()
            tracker.in_flight += 1
            try:
                result = await process_sample(
                    sid,
                    pair,
                    self.reflections,
                    context.scorer,
                    context.rules,
                    tracker,
                    self.stopping,
                )
            except Paused:
                self.pending.put_nowait((sid, pair))  # not decided: the run is not done
                continue
            except TeacherError as exc:
                # The run stops (a dead teacher, a lasting server error), but like a pause: the
                # other workers finish and store the step they are on, so no request already
                # made is lost; the error is raised once they have.
                self.fatal = self.fatal or exc
                self.pending.put_nowait((sid, pair))
                continue
            finally:
                tracker.in_flight -= 1
                if self.stopping():
                    tracker.emit(force=True)
            if isinstance(result, Unavailable):
                self.abandoned += 1
                tracker.fail(Stage.DECISION, call_failure_name(result.error_kind))
                tracker.emit()
                continue
            self.repo.save_decision(context.run.run_id, sid, result)
            tracker.advance(Stage.DECISION)
