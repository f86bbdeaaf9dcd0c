"""The two seams of the run engine: what reflects a pair, and what scores one.

The engine knows a teacher only as a `Reflector` and the student only as a `Scorer`. The real
ones are `srt_local.teachers` (Ollama, embedded llama.cpp) and `scoring_queue.StudentScorer` (a
llama.cpp student in its own thread, over the score cache); tests plug in fakes, and a distributed
executor or an on-device scorer plugs in here the same way (`run_pipeline`'s factories).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from srt_local.pairs import Pair

if TYPE_CHECKING:
    from srt_local.student import PairScore
    from srt_local.teachers.base import ReflectResult


class Reflector(Protocol):
    """A teacher callable from asyncio, up to `concurrency` reflections at once.

    `reflect` returns every request it made (retries included) and the parsed reflection of the
    one that succeeded, or the outcome that ended it; `outcome == "error"` with no reflection means
    transport errors only (the engine retries that reflection in a later run). It raises
    `TeacherError` (with the calls made so far) when it cannot go on at all.
    """

    name: str  # the teacher's name in models.toml
    key: str  # a stable fingerprint of what shapes the replies; versions are stored under it
    concurrency: int

    async def reflect(self, stage: str, pair: Pair) -> ReflectResult:
        """Reflect `pair` at `stage` ("instruction" or "response")."""
        ...

    async def aclose(self) -> None: ...


class Scorer(Protocol):
    """The student: IFD and r-IFD of pairs, batched however it likes.

    `score` answers one pair (urgent: a sample waits on it); `prefetch` queues pairs whose scores
    will be asked for later, at a lower priority. `tokens` counts the target tokens scored so far
    (for throughput). A scoring failure that is not a per-pair status (the model crashed) raises
    from `score`, which fails the run.
    """

    @property
    def tokens(self) -> int: ...

    async def score(self, pair: Pair) -> PairScore: ...

    def prefetch(self, pairs: Sequence[Pair]) -> None: ...

    def close(self) -> None: ...
