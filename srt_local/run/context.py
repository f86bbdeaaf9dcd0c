"""Everything one execution of a run needs, gathered before any work starts.

The teacher is opened before the workers are counted, so a resumed run gets the same width as a
new one (twice the teacher's concurrency), and the student is loaded and checked against the
file the run was made with.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from srt_local.config import ModelsConfig, StudentSpec, for_run
from srt_local.run.method import Rules
from srt_local.run.protocols import Reflector, Scorer
from srt_local.run.repository import PipelineError, RunRow
from srt_local.store import Store

Log = Callable[[str], None]
# Open the teacher a run asks for (its `teacher_to_open`, with its concurrency override).
ReflectorFactory = Callable[[RunRow, Log], Awaitable[Reflector]]
# Load the run's student, ready to score.
ScorerFactory = Callable[[RunRow], Awaitable[Scorer]]


@dataclass(frozen=True)
class RunContext:
    """A run with its teacher open and its student loaded; `aclose` releases both."""

    run: RunRow
    teacher_key: str  # the key the run's versions are stored under
    reflector: Reflector
    scorer: Scorer
    workers: int  # samples in flight at once

    @property
    def rules(self) -> Rules:
        return Rules(
            emit_unreflected=self.run.emit_unreflected,
            full_grid=self.run.full_grid,
            profile=self.run.profile,
        )

    async def aclose(self) -> None:
        try:
            self.scorer.close()
        finally:
            await self.reflector.aclose()


def worker_count(run: RunRow, reflector: Reflector) -> int:
    """Twice the teacher's width keeps the student busy while replies are awaited."""
    width = run.concurrency or reflector.concurrency
    return max(2, 2 * int(width))


async def open_context(
    run: RunRow,
    make_reflector: ReflectorFactory,
    make_scorer: ScorerFactory,
    log: Log,
    reflector: Reflector | None = None,
) -> RunContext:
    """Open the teacher (unless `reflector` is already open), then load the student."""
    if reflector is None:
        reflector = await make_reflector(run, log)
    try:
        scorer = await make_scorer(run)
    except BaseException:
        await reflector.aclose()
        raise
    return RunContext(run, run.teacher_key, reflector, scorer, worker_count(run, reflector))


def teacher_factory(config: ModelsConfig) -> ReflectorFactory:
    """Open the run's teacher from models.toml (Ollama or embedded llama.cpp), with the run's
    prompt set and profile applied (`config.for_run`)."""

    async def make(run: RunRow, log: Log) -> Reflector:
        from srt_local.teachers import open_teacher

        adjusted = for_run(config, run.profile, run.prompt_set)
        return await open_teacher(
            run.teacher_to_open, adjusted, log=log, concurrency=run.concurrency
        )

    return make


def student_factory(config: ModelsConfig, store: Store) -> ScorerFactory:
    """Load the run's student GGUF (refusing a changed file) behind the score cache."""

    async def make(run: RunRow) -> Scorer:
        from srt_local.run.scoring_queue import StudentScorer
        from srt_local.student import Student

        spec = student_spec(run, config)
        student = await asyncio.to_thread(Student.load, spec)
        if student.sha256 != run.student_sha256:
            student.close()
            raise PipelineError(
                f"run {run.run_id} was made with a student file of sha256 "
                f"{run.student_sha256[:12]}; {spec.name} is now {student.sha256[:12]}: "
                "start a new run"
            )
        return StudentScorer(student, store, asyncio.get_running_loop())

    return make


def student_spec(run: RunRow, config: ModelsConfig) -> StudentSpec:
    """The student a run was made with, by its name in models.toml or the path it was given."""
    if run.student_name in config.students:
        return config.student(run.student_name)
    stored = run.config["student_spec"]  # a student given as a path
    return config.student(stored["path"] or stored["name"])
