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

# too_long and rejected are final for the sample (the same prompt would fail the same way); error
# is a transport failure, retried by the next run.
OUTCOMES = ("ok", "parse_failed", "empty", "echo", "refused", "too_long", "rejected", "error")


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


@dataclass(frozen=True)
class Reflection:
    """The parsed content of a reply.

    Instruction stage: a new, self-contained instruction (input "") and its answer.
    Response stage: instruction None (unchanged), the pair's own input, and the better answer.
    """

    critique: str | None
    instruction: str | None
    input: str
    output: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "critique": self.critique,
            "instruction": self.instruction,
            "input": self.input,
            "output": self.output,
        }


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
    outcome: str = "error"


class Teacher(Protocol):
    """A teacher the pipeline can call from asyncio, up to `concurrency` calls at once."""

    name: str
    key: str  # a stable fingerprint of what shapes the replies
    concurrency: int

    async def reflect(self, stage: str, pair: Pair) -> ReflectResult: ...

    async def aclose(self) -> None: ...
