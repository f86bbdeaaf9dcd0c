"""The words a run is described with, defined once: statuses, stages, version kinds, outcomes.

Each enum is a `StrEnum`, so the values stored in the store and printed by the CLI stay the same
strings, and a stored string compares equal to its member.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """A run's `runs.status`."""

    RUNNING = "running"
    PAUSED = "paused"
    DONE = "done"
    INCOMPLETE = "incomplete"  # some samples met teacher transport errors; a rerun retries them
    FAILED = "failed"
    CANCELLED = "cancelled"


# A run with work left that the same settings continue. `running` is here because a process killed
# mid-run leaves it so.
RESUMABLE: frozenset[RunStatus] = frozenset(
    {RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.FAILED, RunStatus.INCOMPLETE}
)
# A run that ended: it has a finished_at.
FINISHED: frozenset[RunStatus] = frozenset(
    {RunStatus.DONE, RunStatus.INCOMPLETE, RunStatus.FAILED, RunStatus.CANCELLED}
)
# The runs the same settings find again instead of starting a new one: a `done` run is found and
# reports done without work; only a cancelled run is never taken up again.
REUSABLE: frozenset[RunStatus] = RESUMABLE | {RunStatus.DONE}


class Stage(StrEnum):
    """The stages of the per-sample method, in order."""

    INSTRUCTION_REFLECTION = "instruction reflection"
    INSTRUCTION_CHOICE = "instruction choice"
    RESPONSE_REFLECTION = "response reflection"
    DECISION = "decision"


STAGES: tuple[Stage, ...] = tuple(Stage)
# The stages whose progress leaves rows in the store (the instruction choice is only a comparison
# of scores), so `srt status` can count them for a run that is not running.
STORED_STAGES: tuple[Stage, ...] = tuple(s for s in STAGES if s is not Stage.INSTRUCTION_CHOICE)


class Kind(StrEnum):
    """The four versions of a sample (METHOD.md): the original and three reflections."""

    ORI = "ori"
    Q = "Q"  # reflected instruction and its answer
    A = "A"  # original instruction, reflected response
    QA = "QA"  # reflected instruction, reflected response
    # The original with its input merged into the instruction by the teacher (paper profile); it
    # takes ori's place as the base of the method, and ori stays stored as imported.
    M = "M"


# The response reflection made from each base version.
RESPONSE_OF: dict[Kind, Kind] = {Kind.ORI: Kind.A, Kind.M: Kind.A, Kind.Q: Kind.QA}
# The versions whose response was reflected (emitted by default).
RESPONSE_REFLECTED: frozenset[Kind] = frozenset({Kind.A, Kind.QA})


class TeacherStage(StrEnum):
    """The teacher's two prompts."""

    INSTRUCTION = "instruction"
    RESPONSE = "response"
    MERGE = "merge"  # instruction and input into one instruction (paper profile)


def teacher_stage(kind: Kind) -> TeacherStage:
    """The prompt that makes version `kind`."""
    if kind is Kind.M:
        return TeacherStage.MERGE
    return TeacherStage.INSTRUCTION if kind is Kind.Q else TeacherStage.RESPONSE


class Profile(StrEnum):
    """How closely a run follows the reference code (README, "Fidelity").

    `paper`: the reference pipeline's rules (merge stage, greedy re-ask once, an unscorable original
    never emitted, floor rounding and IFD <= 1 in top-k, the reference's trimming of long inputs).
    `default`: srt-local's own rules, each an improvement named in the README.
    """

    DEFAULT = "default"
    PAPER = "paper"


class Outcome(StrEnum):
    """What one teacher call, or a whole reflection, came to."""

    OK = "ok"
    PARSE_FAILED = "parse_failed"
    EMPTY = "empty"
    ECHO = "echo"
    REFUSED = "refused"
    TOO_LONG = "too_long"  # the prompt cannot fit the teacher's context: final for the sample
    REJECTED = "rejected"  # the server refused this one request (HTTP 400): final for the sample
    REPLY_TOO_LONG = "reply_too_long"  # the reply passed [limits] reply_chars: final for the sample
    ERROR = "error"  # a transport error: the reflection is retried by the next run


class Backend(StrEnum):
    """How a teacher is served."""

    OLLAMA = "ollama"
    LLAMACPP = "llamacpp"


class Override(StrEnum):
    """A person's verdict on one decision (`decisions.override`)."""

    ACCEPT = "accept"
    REJECT = "reject"


def failure_name(kind: str, outcome: str) -> str:
    """How a reflection that failed for good is named, in the run summary and in `srt status`."""
    return f"reflection {kind}: {outcome}"


def call_failure_name(error_kind: str | None) -> str:
    """How a failed teacher call is named, in the run summary and in `srt status`."""
    return f"teacher call: {error_kind}"
