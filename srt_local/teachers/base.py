"""What every teacher shares: the parsed reflection, the record of one call, and the interface.

A teacher turns (stage, pair) into a ReflectResult: every request it sent (retries included), each
kept with its raw reply and outcome, and the parsed reflection of the attempt that succeeded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from srt_local.errors import SrtError
from srt_local.pairs import Pair
from srt_local.reflection import Reflection
from srt_local.run.vocabulary import Outcome

__all__ = ["OUTCOMES", "ReflectResult", "Reflection", "Teacher", "TeacherCall", "TeacherError"]

OUTCOMES: tuple[Outcome, ...] = tuple(Outcome)  # kept for importers; the enum is the definition


class TeacherError(SrtError, RuntimeError):
    """The teacher cannot go on (model not pulled, server gone, a request the server rejects).

    `calls` holds the requests made for the reflection in progress, so they can still be stored.
    """

    def __init__(self, message: str, calls: list[TeacherCall] | None = None) -> None:
        super().__init__(message)
        self.calls: list[TeacherCall] = calls or []


class TeacherServerDown(TeacherError):
    """The server failed the same way several times in a row (out of memory, gone, 502...): the
    run should pause with this message (the cause and what to do) and resume when run again."""


@dataclass
class TeacherCall:
    """One request and its reply: everything the store's teacher_calls row holds."""

    stage: str
    attempt: int  # 1-based, counting every request for this reflection
    teacher_name: str
    backend: str
    model: str
    model_digest: str | None
    host: str | None
    options: dict[str, Any]
    prompt_version: str
    output_mode: str
    messages: list[dict[str, str]]
    raw_reply: str | None
    outcome: str
    reflection: Reflection | None
    prompt_tokens: int | None
    prompt_eval_count: int | None
    prompt_truncated: bool | None
    eval_count: int | None
    total_duration_ms: float | None
    load_duration_ms: float | None
    prompt_eval_duration_ms: float | None
    eval_duration_ms: float | None
    error_kind: str | None
    error_message: str | None
    started_at: datetime
    finished_at: datetime
    thinking: str | None = None  # the model's thinking, when it thought
    thinking_tokens: int | None = None


@dataclass
class ReflectResult:
    """Every attempt in order, and the reflection of the one that parsed (None if none did)."""

    calls: list[TeacherCall] = field(default_factory=list)
    reflection: Reflection | None = None
    outcome: str = Outcome.ERROR


class Teacher(Protocol):
    """A teacher the pipeline can call from asyncio, up to `concurrency` calls at once."""

    name: str
    key: str  # a stable fingerprint of what shapes the replies
    concurrency: int

    async def reflect(self, stage: str, pair: Pair) -> ReflectResult: ...

    async def aclose(self) -> None: ...
