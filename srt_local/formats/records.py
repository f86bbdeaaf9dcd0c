"""One record of a dataset, checked and turned into a Pair, in each of the three formats.

Formats:
- alpaca:   {"instruction": str, "input": str | null (optional), "output": str}; other keys ignored.
- sharegpt: {"conversations": [{"from": "human" | "gpt" | "system", "value": str}, ...],
             "system": str (optional)}  (LLaMA-Factory's sharegpt).
- messages: {"messages": [{"role": "user" | "assistant" | "system", "content": str}, ...]}
            (OpenAI chat style).

Multi-turn policy: an instruction pair is one exchange, so a conversation gives the first user turn
(the instruction, input "") and the assistant turn right after it (the output). A system prompt
(a system turn before that exchange, or sharegpt's top-level "system") is dropped, and so is every
turn after the first reply; each dropped turn is counted in `turns_skipped`, never silently.
Turns after the first reply may use the tool roles of function-calling data (function_call,
observation, tool, ...): they are dropped and counted like any later turn. A conversation that opens
with the assistant, has no reply to its first user turn, uses an unknown role or has an empty
instruction or reply is rejected, naming the turn and field. A turn's content may be a string or a
list of parts (`[{"type": "text", "text": ...}]`, LLaMA-Factory writes "value" for "text"); the text
parts are joined, and any other part (an image, audio) rejects the record: its pair is not text.

Every text field is checked against the import size limit and for lone surrogates (a `\\ud800`
escape is valid JSON but not Unicode, so the store could not hold it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from srt_local.errors import SrtError
from srt_local.pairs import Pair
from srt_local.textsafe import visible

FORMATS = ("alpaca", "sharegpt", "messages")

RAW_LIMIT = 500  # characters of a bad record kept in the store
DEFAULT_FIELD_CHARS = 200_000  # the import limit when models.toml sets none ([limits])

# Roles of tool-using conversations (LLaMA-Factory's function_call/observation, OpenAI's tool and
# function, Llama 3's ipython): allowed after the first exchange, where every turn is dropped.
TOOL_ROLES = ("function_call", "observation", "tool", "function", "ipython")

_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class RecordError:
    """A record that could not be imported: where it is, which field, and why."""

    file: str
    location: str
    field: str | None
    reason: str
    raw: str | None = None  # the record's text, truncated to RAW_LIMIT characters

    def __str__(self) -> str:
        where = f"{self.file}: {self.location}: "
        return where + (f"field {self.field!r}: " if self.field else "") + self.reason


@dataclass(frozen=True)
class Conversation:
    """The roles and keys of one conversation format."""

    key: str
    role_key: str
    content_key: str
    user: str
    assistant: str
    system: str


CONVERSATIONS = {
    "sharegpt": Conversation("conversations", "from", "value", "human", "gpt", "system"),
    "messages": Conversation("messages", "role", "content", "user", "assistant", "system"),
}


@dataclass(frozen=True)
class FieldProblem:
    """A problem with one field of a record (None: with the record as a whole)."""

    field: str | None
    reason: str


def describe(value: Any) -> str:
    """A short, JSON-like rendering of a wrong value for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # Control characters as the screens show them everywhere (ESC as ␛), on one line.
        text = '"' + visible(value, one_line=True) + '"'
        return text if len(text) <= 40 else text[:37] + '..."'
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


FORMAT_KEYS = {
    "sharegpt": ("conversations",),
    "messages": ("messages",),
    "alpaca": ("instruction", "output"),
}


def _has_keys(record: dict[str, Any], fmt: str) -> bool:
    keys = FORMAT_KEYS[fmt]
    # Two plain lookups, not any(): this runs once per record of a million-record file.
    return keys[0] in record or (len(keys) > 1 and keys[1] in record)


def detect_format(record: Any) -> str | None:
    """The format a record's keys point to, or None if they name none."""
    if not isinstance(record, dict):
        return None
    return next((fmt for fmt in FORMAT_KEYS if _has_keys(record, fmt)), None)


class RecordProblems(SrtError):
    """Every problem found in one record."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(p.reason for p in problems))
        self.problems = problems


def to_pair(
    record: Any, fmt: str, max_chars: int = DEFAULT_FIELD_CHARS, surrogates: bool = True
) -> tuple[Pair, int]:
    """The record as a Pair and the number of turns the multi-turn policy dropped.

    Raises RecordProblems, with every problem found, when the record is not a valid `fmt` record
    (a text field longer than `max_chars` is one). `surrogates=False` skips the search for lone
    surrogates, for a record whose source text has no `\\uD8..`-`\\uDF..` escape (the reader knows).
    """
    if not isinstance(record, dict):
        raise RecordProblems(
            [FieldProblem(None, f"expected a JSON object, got {describe(record)}")]
        )
    looks_like = None if _has_keys(record, fmt) else detect_format(record)
    if looks_like is not None:
        article = "an" if looks_like == "alpaca" else "a"
        raise RecordProblems(
            [FieldProblem(None, f"{article} {looks_like} record, but the file is read as {fmt}")]
        )
    if fmt == "alpaca":
        return _alpaca(record, max_chars, surrogates), 0
    return _conversation(record, CONVERSATIONS[fmt], max_chars, surrogates)


def text_problem(value: str, max_chars: int, surrogates: bool = True) -> str | None:
    """Why a string cannot be stored as a field, or None if it can."""
    if len(value) > max_chars:
        return (
            f"{len(value):,} characters, over the import limit of {max_chars:,} "
            "([limits] import_field_chars in models.toml)"
        )
    found = _SURROGATE.search(value) if surrogates else None
    if found is not None:
        return (
            f"a lone surrogate \\u{ord(found.group()):04x} at character {found.start()} "
            "(an escape that is not Unicode text)"
        )
    return None


def _text(
    record: dict[str, Any],
    key: str,
    field: str,
    required: bool,
    problems: list[FieldProblem],
    max_chars: int,
    surrogates: bool,
) -> str:
    value = record.get(key)
    # The common case, checked first: a million records pass here.
    if (
        type(value) is str
        and len(value) <= max_chars
        and not (surrogates and _SURROGATE.search(value))
        and (not required or (value and not value.isspace()))
    ):
        return value
    if key not in record:
        if required:
            problems.append(FieldProblem(field, "missing"))
        return ""
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        problems.append(FieldProblem(field, f"expected a string, got {describe(value)}"))
        return ""
    if required and not value.strip():
        problems.append(FieldProblem(field, "empty" if not value else "only whitespace"))
    else:
        bad = text_problem(value, max_chars, surrogates)
        if bad is not None:
            problems.append(FieldProblem(field, bad))
    return value


def _alpaca(record: dict[str, Any], max_chars: int, surrogates: bool) -> Pair:
    problems: list[FieldProblem] = []
    instruction = _text(record, "instruction", "instruction", True, problems, max_chars, surrogates)
    input_ = _text(record, "input", "input", False, problems, max_chars, surrogates)
    output = _text(record, "output", "output", True, problems, max_chars, surrogates)
    if problems:
        raise RecordProblems(problems)
    return Pair(instruction, input_, output)


def _content(turn: dict[str, Any], conv: Conversation) -> tuple[str | None, str]:
    """A turn's text (a string, or its text parts joined) or None, and why not."""
    if conv.content_key not in turn:
        return None, "missing"
    content = turn[conv.content_key]
    if isinstance(content, str):
        return content, ""
    if not isinstance(content, list):
        return None, f"expected a string or a list of parts, got {describe(content)}"
    texts: list[str] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text":
            got = describe(kind) + " part" if isinstance(part, dict) else describe(part)
            return None, f"part {j}: only text parts can be scored, got {got}"
        text = part.get("text", part.get("value"))
        if not isinstance(text, str):
            return None, f"part {j}: expected a string in 'text', got {describe(text)}"
        texts.append(text)
    return "".join(texts), ""


def _conversation(
    record: dict[str, Any], conv: Conversation, max_chars: int, surrogates: bool
) -> tuple[Pair, int]:
    problems: list[FieldProblem] = []
    if conv.key not in record:
        raise RecordProblems([FieldProblem(conv.key, "missing")])
    turns = record[conv.key]
    if not isinstance(turns, list):
        raise RecordProblems([FieldProblem(conv.key, f"expected a list, got {describe(turns)}")])
    known = (conv.user, conv.assistant, conv.system)
    roles: list[str | None] = []
    for i, turn in enumerate(turns):
        field = f"{conv.key}[{i}]"
        if not isinstance(turn, dict):
            problems.append(FieldProblem(field, f"expected an object, got {describe(turn)}"))
            roles.append(None)
            continue
        role = turn.get(conv.role_key)
        if role not in known and role not in TOOL_ROLES:
            reason = "missing" if conv.role_key not in turn else f"unknown role {describe(role)}"
            allowed = ", ".join(repr(r) for r in known)
            problems.append(
                FieldProblem(f"{field}.{conv.role_key}", f"{reason} (allowed: {allowed})")
            )
            roles.append(None)
            continue
        roles.append(role)
    if problems:
        raise RecordProblems(problems)

    skipped = 0
    system = record.get("system")
    if system is not None and not isinstance(system, str):
        raise RecordProblems([FieldProblem("system", f"expected a string, got {describe(system)}")])
    if system and system.strip():
        skipped += 1
    first = 0
    while first < len(roles) and roles[first] == conv.system:
        first += 1
    skipped += first
    if first == len(roles):
        reason = "empty conversation" if not roles else "only system turns"
        raise RecordProblems([FieldProblem(conv.key, f"{reason}: no {conv.user!r} turn")])
    if roles[first] != conv.user:
        raise RecordProblems(
            [
                FieldProblem(
                    f"{conv.key}[{first}].{conv.role_key}",
                    f"the conversation must open with {conv.user!r} (after any system prompt), "
                    f"got {roles[first]!r}",
                )
            ]
        )
    if first + 1 == len(roles) or roles[first + 1] != conv.assistant:
        got = "nothing" if first + 1 == len(roles) else repr(roles[first + 1])
        if first + 1 < len(roles) and roles[first + 1] in TOOL_ROLES:
            got += " (a tool turn: only a direct reply makes an instruction pair)"
        raise RecordProblems(
            [
                FieldProblem(
                    f"{conv.key}[{first + 1}].{conv.role_key}",
                    f"expected the {conv.assistant!r} reply to the first {conv.user!r} turn, "
                    f"got {got}",
                )
            ]
        )
    # Only the exchange is read: the turns after it are dropped, whatever their content.
    texts: list[str] = []
    for i in (first, first + 1):
        field = f"{conv.key}[{i}].{conv.content_key}"
        text, reason = _content(turns[i], conv)
        if text is None:
            problems.append(FieldProblem(field, reason))
        elif not text.strip():
            problems.append(FieldProblem(field, "empty" if not text else "only whitespace"))
        else:
            bad = text_problem(text, max_chars, surrogates)
            if bad is not None:
                problems.append(FieldProblem(field, bad))
        texts.append(text or "")
    if problems:
        raise RecordProblems(problems)
    skipped += len(roles) - (first + 2)
    return Pair(texts[0], "", texts[1]), skipped
