"""A run's live counts: per-stage progress and failures, throughput and ETA, emitted throttled."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from srt_local.run.vocabulary import STAGES, Stage

EMIT_EVERY = 0.25  # seconds between two progress reports (the last one is always sent)


@dataclass
class StageProgress:
    name: str
    total: int
    done: int = 0
    failed: dict[str, int] = field(default_factory=dict)


@dataclass
class RunProgress:
    run_id: int
    stages: list[StageProgress]
    tokens_per_s: float
    calls_per_s: float
    eta_s: float | None
    in_flight: int = 0
    """Samples being reflected or scored now: what a pause waits for."""


class ProgressTracker:
    """Counts what one execution of a run does and reports it to `emit`, at most every 0.25 s.

    `tokens` reads the scorer's target-token count when a report is made.
    """

    def __init__(
        self,
        run_id: int,
        total: int,
        already_decided: int,
        emit: Callable[[RunProgress], None] | None,
        tokens: Callable[[], int] = lambda: 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run_id = run_id
        self.already_decided = already_decided
        self.stages = {s: StageProgress(s, total, already_decided) for s in STAGES}
        self.calls = 0
        self.in_flight = 0  # samples being reflected or scored now
        self.tokens = tokens
        self._emit = emit
        self._clock = clock
        self.started = clock()
        self._last_emit = 0.0

    def advance(self, stage: Stage) -> None:
        self.stages[stage].done += 1
        self.emit()

    def fail(self, stage: Stage, why: str) -> None:
        failed = self.stages[stage].failed
        failed[why] = failed.get(why, 0) + 1

    def add_calls(self, n: int) -> None:
        self.calls += n

    def elapsed(self) -> float:
        return self._clock() - self.started

    def failures(self) -> dict[str, int]:
        """Every failure of this execution by kind, over all stages."""
        total: Counter[str] = Counter()
        for stage in self.stages.values():
            total.update(stage.failed)
        return dict(total)

    def emit(self, force: bool = False) -> None:
        now = self._clock()
        if self._emit is None or (not force and now - self._last_emit < EMIT_EVERY):
            return
        self._last_emit = now
        self._emit(self.snapshot())

    def snapshot(self) -> RunProgress:
        elapsed = max(self.elapsed(), 1e-6)
        final = self.stages[Stage.DECISION]
        decided_now = final.done - self.already_decided
        remaining = final.total - final.done - sum(final.failed.values())
        eta = remaining * elapsed / decided_now if decided_now > 0 else None
        return RunProgress(
            run_id=self.run_id,
            stages=[
                StageProgress(s.name, s.total, s.done, dict(s.failed)) for s in self.stages.values()
            ],
            tokens_per_s=self.tokens() / elapsed,
            calls_per_s=self.calls / elapsed,
            eta_s=eta,
            in_flight=self.in_flight,
        )
