"""A fake teacher and a fake student behind the engine's real protocols (`srt_local.run.protocols`).

`FakeReflector` answers from rules (or a queue of actions per sample), records every reflection it
was asked for and can fail like a real teacher: a reply that never parses, transport errors, a
fatal `TeacherError`. `FakeScorer` gives deterministic IFD / r-IFD from the pair's text (a table
you give it, else a hash). Both run in microseconds, so the pipeline's logic is tested in
milliseconds.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from srt_local.pairs import Pair
from srt_local.student import PairScore
from srt_local.teachers.base import Reflection, ReflectResult, TeacherCall, TeacherError

OK, PARSE_FAILED, UNAVAILABLE, FATAL = "ok", "parse_failed", "unavailable", "fatal"
TOO_LONG = "too_long"  # the request cannot fit the teacher's context: a final failure


def q_of(pair: Pair) -> Pair:
    """The fake teacher's reflected instruction (Q) of a pair, with its answer."""
    return Pair(f"{pair.instruction} Explain step by step.", "", f"{pair.output} In detail.")


def merged(pair: Pair) -> Pair:
    """The fake teacher's merge of a pair's input into its instruction (version M)."""
    return Pair(f"{pair.instruction} Given: {pair.input}", "", pair.output)


def better(pair: Pair) -> Pair:
    """The fake teacher's response reflection of a pair (A of ori, QA of Q)."""
    return Pair(pair.instruction, pair.input, f"{pair.output} Better.")


@dataclass
class Asked:
    stage: str
    pair: Pair
    action: str


class FakeReflector:
    """A `Reflector`. `rule(stage, pair)` names the action for a request: ok, parse_failed,
    unavailable (transport errors) or fatal (TeacherError); default ok. `delay` seconds per call."""

    def __init__(
        self,
        rule: Callable[[str, Pair], str] | None = None,
        *,
        name: str = "fake-teacher",
        key: str = "fake-key",
        concurrency: int = 2,
        delay: float = 0.0,
    ) -> None:
        self.name = name
        self.key = key
        self.concurrency = concurrency
        self.rule = rule or (lambda _stage, _pair: OK)
        self.delay = delay
        self.asked: list[Asked] = []  # every request answered (a cancelled one is not)
        self.in_flight = 0
        self.max_in_flight = 0
        self.closed = False

    async def reflect(self, stage: str, pair: Pair) -> ReflectResult:
        action = self.rule(stage, pair)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        self.asked.append(Asked(stage, pair, action))
        if action == FATAL:
            raise TeacherError("the fake teacher is gone", [self._call(stage, None, "error")])
        if action == UNAVAILABLE:
            calls = [self._call(stage, None, "error", attempt=i) for i in (1, 2)]
            return ReflectResult(calls, None, "error")
        if action == PARSE_FAILED:
            return ReflectResult([self._call(stage, "no markers", "parse_failed")], None, action)
        if action == TOO_LONG:
            return ReflectResult([self._call(stage, None, TOO_LONG)], None, TOO_LONG)
        makers = {"instruction": q_of, "merge": merged}
        made = makers.get(stage, better)(pair)
        reflection = Reflection(
            critique=None if stage == "merge" else f"critique of {pair.instruction}",
            instruction=made.instruction if stage in makers else None,
            input=made.input,
            output=made.output,
        )
        call = self._call(stage, "[reply]", "ok", reflection=reflection)
        return ReflectResult([call], reflection, "ok")

    async def aclose(self) -> None:
        self.closed = True

    def _call(
        self,
        stage: str,
        reply: str | None,
        outcome: str,
        attempt: int = 1,
        reflection: Reflection | None = None,
    ) -> TeacherCall:
        now = datetime.now(UTC)
        error = outcome == "error"
        return TeacherCall(
            stage=stage,
            attempt=attempt,
            teacher_name=self.name,
            backend="ollama",
            model="fake",
            model_digest=None,
            host=None,
            options={},
            prompt_version="fake-v1",
            output_mode="text",
            messages=[{"role": "user", "content": "reflect"}],
            raw_reply=reply,
            outcome=outcome,
            reflection=reflection,
            prompt_tokens=None,
            prompt_eval_count=None,
            prompt_truncated=None,
            eval_count=None,
            total_duration_ms=None,
            load_duration_ms=None,
            prompt_eval_duration_ms=None,
            eval_duration_ms=None,
            error_kind="timeout" if error else None,
            error_message="timed out" if error else None,
            started_at=now,
            finished_at=now,
        )


Score = tuple[float, float] | str  # (IFD, r-IFD), or a failed scoring status


def hashed_score(pair: Pair) -> Score:
    """A deterministic (IFD, r-IFD) in [0.4, 1.2) from the pair's hash."""
    h = hashlib.sha256(pair.hash.encode()).digest()
    return 0.4 + h[0] / 320, 0.4 + h[1] / 320


@dataclass
class FakeScorer:
    """A `Scorer`: `table[pair]` where given, else `default(pair)`; records every pair scored."""

    table: dict[Pair, Score] = field(default_factory=dict)
    default: Callable[[Pair], Score] = hashed_score
    scored: list[Pair] = field(default_factory=list)
    prefetched: list[Pair] = field(default_factory=list)
    closed: bool = False
    _tokens: int = 0

    @property
    def tokens(self) -> int:
        return self._tokens

    async def score(self, pair: Pair) -> PairScore:
        self.scored.append(pair)
        await asyncio.sleep(0)
        value = self.table.get(pair) or self.default(pair)
        self._tokens += 10
        if isinstance(value, str):
            return PairScore.failed(value, "fake")
        ifd, rifd = value
        return PairScore("ok", None, 1.0, 1.0, 1.0, 1.0, 10, 10, ifd, rifd, 0.0, 0.0)

    def prefetch(self, pairs: Sequence[Pair]) -> None:
        self.prefetched.extend(pairs)

    def close(self) -> None:
        self.closed = True
