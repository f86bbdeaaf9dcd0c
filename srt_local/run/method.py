"""The per-sample method of Selective Reflection-Tuning, over a reflector and a scorer.

Stage 1 reflects the instruction (Q) and keeps it if IFD rises; stage 2 reflects the chosen
branch's response (QA on Q, A on ori) and keeps it if r-IFD falls (`srt_local.decision`). With the
merge stage on (paper profile), a sample with an input first has the teacher merge instruction and
input into one instruction (version M), which takes ori's place as the base; a merge that fails
leaves ori as imported in its place (recorded as the merge's failure). Every
reflection is looked up first: a version or a final failure stored by an earlier execution is
never asked for again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from srt_local.decision import Decision, VersionScore, choose_instruction, decide
from srt_local.pairs import Pair
from srt_local.run.progress import ProgressTracker
from srt_local.run.protocols import Reflector, Scorer
from srt_local.run.repository import RunRepository, StoredWork
from srt_local.run.vocabulary import (
    RESPONSE_OF,
    Kind,
    Outcome,
    Profile,
    Stage,
    failure_name,
    teacher_stage,
)
from srt_local.teachers.base import ReflectResult, TeacherError


@dataclass(frozen=True)
class Made:
    """The version exists (stored earlier or just made)."""

    pair: Pair


@dataclass(frozen=True)
class Failed:
    """The teacher's replies never parsed within its budget: final, never asked again."""

    outcome: Outcome


@dataclass(frozen=True)
class Unavailable:
    """Every request met a transport error: the sample waits for the next run."""

    error_kind: str


Reflected = Made | Failed | Unavailable


@dataclass(frozen=True)
class Rules:
    """The run's settings that change the method."""

    emit_unreflected: bool = False
    full_grid: bool = False  # reflect the responses of both branches
    profile: Profile = Profile.DEFAULT

    @property
    def merge(self) -> bool:
        """Merge an input into its instruction before reflecting (the reference's data has none)."""
        return self.profile is Profile.PAPER


class Reflections:
    """A run's versions: the stored ones, and new ones asked of the reflector and saved at once.

    New versions are stored under the run's `teacher_key`, as the earlier ones were.
    """

    def __init__(
        self,
        reflector: Reflector,
        repository: RunRepository,
        stored: StoredWork,
        tracker: ProgressTracker,
        teacher_key: str,
    ) -> None:
        self.reflector = reflector
        self.teacher_key = teacher_key
        self.repository = repository
        self.stored = stored
        self.tracker = tracker

    async def get(self, sample_id: int, kind: Kind, base_kind: Kind, base: Pair) -> Reflected:
        """Version `kind` of a sample, made from version `base_kind` (whose texts are `base`)."""
        known = self.stored.versions.get((sample_id, kind))
        if known is not None:
            return Made(known)
        failure = self.stored.failures.get((sample_id, kind))
        if failure is not None:
            return Failed(failure)
        key = self.teacher_key
        stage = teacher_stage(kind)
        try:
            result = await self.reflector.reflect(stage, base)
        except TeacherError as exc:
            # The run stops; the requests made before the fatal error are still kept.
            self.repository.save_calls(sample_id, base_kind, key, exc.calls)
            raise
        self.tracker.add_calls(len(result.calls))
        made = _made(kind, base, result)
        outcome = Outcome(result.outcome)
        transient = made is None and outcome is Outcome.ERROR
        critique = result.reflection.critique if result.reflection is not None else None
        failure = None if made is not None or transient else outcome
        self.repository.save_reflection(
            sample_id, base_kind, kind, key, result.calls, made, critique, failure
        )
        if made is not None:
            self.stored.versions[(sample_id, kind)] = made
            return Made(made)
        if failure is not None:
            self.stored.failures[(sample_id, kind)] = failure
            return Failed(failure)
        last = result.calls[-1] if result.calls else None
        return Unavailable(last.error_kind if last and last.error_kind else "error")


def _made(kind: Kind, base: Pair, result: ReflectResult) -> Pair | None:
    refl = result.reflection
    if refl is None:
        return None
    if kind is Kind.Q:
        assert refl.instruction is not None and refl.output is not None
        return Pair(refl.instruction, refl.input or "", refl.output)
    if kind is Kind.M:
        assert refl.instruction is not None
        return Pair(refl.instruction, "", base.output)
    assert refl.output is not None
    return Pair(base.instruction, base.input, refl.output)


async def score_of(scorer: Scorer, version: Made | Failed) -> VersionScore:
    """A version's IFD and r-IFD, or why it has none."""
    if isinstance(version, Failed):
        return VersionScore(problem=f"reflection {version.outcome}")
    result = await scorer.score(version.pair)
    if result.status != "ok":
        return VersionScore(problem=f"score {result.status}")
    return VersionScore(result.ifd_ppl, result.rifd_ppl)


class Paused(Exception):
    """A stop arrived between two steps of a sample: what it made is stored, the rest waits."""


def _never() -> bool:
    return False


async def process_sample(
    sample_id: int,
    pair: Pair,
    reflections: Reflections,
    scorer: Scorer,
    rules: Rules,
    tracker: ProgressTracker,
    stopping: Callable[[], bool] = _never,
) -> Decision | Unavailable:
    """One sample through both stages: its decision, or the transport error that stopped it.

    Between two steps (a reflection, a scoring) it raises Paused when `stopping()`: the step in
    flight finishes and is stored, so no reply already asked for is thrown away and asked again.
    """

    def pause_point() -> None:
        if stopping():
            raise Paused

    ori, ori_kind = Made(pair), Kind.ORI
    if rules.merge and pair.input.strip():
        merged = await reflections.get(sample_id, Kind.M, Kind.ORI, pair)
        if isinstance(merged, Unavailable):
            return merged
        if isinstance(merged, Made):
            ori, ori_kind = merged, Kind.M
        else:
            tracker.fail(Stage.INSTRUCTION_REFLECTION, failure_name(Kind.M, merged.outcome))
    q = await reflections.get(sample_id, Kind.Q, ori_kind, ori.pair)
    if isinstance(q, Unavailable):
        return q
    if isinstance(q, Failed):
        tracker.fail(Stage.INSTRUCTION_REFLECTION, failure_name(Kind.Q, q.outcome))
    tracker.advance(Stage.INSTRUCTION_REFLECTION)
    pause_point()

    s_ori, s_q = await asyncio.gather(score_of(scorer, ori), score_of(scorer, q))
    pause_point()
    choice = choose_instruction(s_ori, s_q, rules.profile)
    tracker.advance(Stage.INSTRUCTION_CHOICE)

    base_kind = Kind.Q if choice.base == Kind.Q and isinstance(q, Made) else ori_kind
    base = q if base_kind is Kind.Q and isinstance(q, Made) else ori
    reflected = await reflections.get(sample_id, RESPONSE_OF[base_kind], base_kind, base.pair)
    if isinstance(reflected, Unavailable):
        return reflected
    if rules.full_grid and isinstance(q, Made):
        other_kind, other = (ori_kind, ori) if base_kind is Kind.Q else (Kind.Q, q)
        extra = await reflections.get(sample_id, RESPONSE_OF[other_kind], other_kind, other.pair)
        if isinstance(extra, Unavailable):
            return extra
    if isinstance(reflected, Failed):
        tracker.fail(
            Stage.RESPONSE_REFLECTION, failure_name(RESPONSE_OF[base_kind], reflected.outcome)
        )
    tracker.advance(Stage.RESPONSE_REFLECTION)
    pause_point()

    s_reflected = await score_of(scorer, reflected)
    return decide(s_ori, s_q, choice, s_reflected, rules.emit_unreflected, rules.profile, ori_kind)
