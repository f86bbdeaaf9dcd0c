"""Parse a teacher's reply into a Reflection, or say precisely why it cannot be used.

Markers mode is strict about the markers and tolerant of their dress: `[New Instruction]`,
`[New Answer]`, `[Better Answer]` and `[End]` must be there in square brackets, but case, inner
spaces, a markdown heading or bold around them, a trailing colon, and a missing final `[End]` at the
very end of the reply are all accepted. A bare word "End" (as in "The Endangered...") never ends a
block. JSON mode reads the first JSON object of the reply (a ```json fence is fine).

Outcomes: ok; empty (nothing, or "N/A", where a field should be); echo (our placeholder text or the
original pair handed back); refused (the teacher declined); parse_failed (anything else, with the
reason in `detail`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from srt_local.pairs import Pair
from srt_local.prompts import JSON_KEYS, PLACEHOLDERS
from srt_local.reflection import Reflection

_MARKER = re.compile(
    r"(?:^[ \t]*#{1,6}[ \t]*)?"  # a markdown heading, only at the start of a line
    r"(?:\*\*|__)?[ \t]*"
    r"[\[【［][ \t]*"
    r"(new[ \t_-]+instruction|new[ \t_-]+answer|better[ \t_-]+answer|end)"
    r"[ \t]*[\]】］]"
    r"(?:[ \t]*[:：])?(?:[ \t]*(?:\*\*|__))?(?:[ \t]*[:：])?",
    re.IGNORECASE | re.MULTILINE,
)
_KINDS = {
    "newinstruction": "instruction",
    "newanswer": "answer",
    "betteranswer": "better",
    "end": "end",
}
_MARKER_NAMES = {
    "instruction": "[New Instruction]",
    "answer": "[New Answer]",
    "better": "[Better Answer]",
}

# A line of markdown dress only (rules, stray bold or heading marks) carries no content.
_DRESS_LINE = re.compile(r"^[\s#*_=\->]*$")

_EMPTY_WORDS = {"n/a", "na", "none", "null", "nil", "-", "--", "...", "…", "tbd", "n.a", "empty"}

_GENERIC_PLACEHOLDERS = {
    "your instruction",
    "your answer",
    "your new instruction",
    "your new answer",
    "your better answer",
    "the new instruction",
    "the new answer",
    "the better answer",
    "new instruction",
    "new answer",
    "better answer",
    "instruction",
    "answer",
}

_REFUSAL = re.compile(
    r"^\W*(?:"
    r"i'?m sorry|i am sorry|sorry,? but|i apologi[sz]e,? but|"
    r"i (?:cannot|can'?t|won'?t|will not|must decline to|am not able to|am unable to) "
    r"(?:help|assist|provide|comply|fulfil|fulfill|create|write|do|answer|generate|complete)|"
    r"i'?m (?:not able|unable) to|"
    r"as an ai\b[^.]{0,60}\b(?:cannot|can'?t|unable|not able)|"
    r"lo siento|je suis désolé|je ne peux pas|desculpe|es tut mir leid|mi dispiace|"
    r"抱歉|对不起|很抱歉|我不能|我无法|申し訳"
    r")",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Parsed:
    """The outcome of parsing one reply; `reflection` is set when outcome is ok."""

    outcome: str
    reflection: Reflection | None = None
    detail: str | None = None


@dataclass(frozen=True)
class _Block:
    kind: str  # instruction | answer | better
    text: str
    closed: str  # end: by [End]; marker: by the next block's marker; eof: by the end of the reply


def parse_reply(
    stage: str, output_mode: str, reply: str | None, pair: Pair, *, hit_limit: bool = False
) -> Parsed:
    """Parse `reply` to a reflection of `pair` at `stage`.

    `hit_limit`: the reply stopped at the token limit, so a block with no [End] was cut short
    and is not accepted.
    """
    if reply is None or not reply.strip():
        return Parsed("empty", detail="the reply is empty")
    if output_mode == "json":
        return _parse_json(stage, reply, pair, hit_limit)
    return _parse_markers(stage, reply, pair, hit_limit)


# ---------------------------------------------------------------- markers


def _parse_markers(stage: str, reply: str, pair: Pair, hit_limit: bool) -> Parsed:
    matches = list(_MARKER.finditer(reply))
    blocks = _blocks(reply, matches)
    if not blocks:
        if _is_refusal(reply):
            return Parsed("refused", detail="the teacher declined")
        wanted = "[New Instruction]" if stage == "instruction" else "[Better Answer]"
        return Parsed("parse_failed", detail=f"no {wanted} ... [End] block in the reply")
    critique = _clean(reply[: matches[0].start()]) or None
    failures: list[tuple[str, str]] = []
    chosen: list[tuple[int, Reflection]] = []  # (rank, reflection); rank 0 = closed by [End]
    if stage == "instruction":
        for i, block in enumerate(blocks):
            if block.kind != "instruction":
                continue
            answer = blocks[i + 1] if i + 1 < len(blocks) else None
            if answer is None or answer.kind != "answer":
                failures.append(
                    ("parse_failed", "a [New Instruction] with no [New Answer] after it")
                )
                continue
            problem = _judge(block, "the new instruction", pair.instruction, hit_limit) or _judge(
                answer, "the new answer", pair.output, hit_limit
            )
            if problem:
                failures.append(problem)
                continue
            rank = 0 if block.closed == "end" and answer.closed == "end" else 1
            chosen.append((rank, Reflection(critique, block.text, "", answer.text)))
    else:
        for block in blocks:
            if block.kind != "better":
                continue
            problem = _judge(block, "the better answer", pair.output, hit_limit)
            if problem:
                failures.append(problem)
                continue
            rank = 0 if block.closed == "end" else 1
            chosen.append((rank, Reflection(critique, None, pair.input, block.text)))
    if chosen:
        # Prefer the first block the teacher closed properly; else its last, unclosed, attempt.
        closed = [r for rank, r in chosen if rank == 0]
        return Parsed("ok", closed[0] if closed else chosen[-1][1])
    if not failures:
        wanted = "[New Instruction]" if stage == "instruction" else "[Better Answer]"
        found = ", ".join(sorted({_MARKER_NAMES[b.kind] for b in blocks}))
        failures.append(("parse_failed", f"no {wanted} block (found {found})"))
    return _worst(failures)


def _blocks(reply: str, matches: list[re.Match[str]]) -> list[_Block]:
    blocks = []
    for i, match in enumerate(matches):
        kind = _KINDS[re.sub(r"[\s_-]+", "", match.group(1).lower())]
        if kind == "end":
            continue
        nxt = matches[i + 1] if i + 1 < len(matches) else None
        if nxt is None:
            text, closed = reply[match.end() :], "eof"
        else:
            text = reply[match.end() : nxt.start()]
            closed = "end" if nxt.group(1).lower() == "end" else "marker"
        blocks.append(_Block(kind, _clean(text), closed))
    return blocks


def _clean(text: str) -> str:
    lines = text.strip().splitlines()
    while lines and _DRESS_LINE.match(lines[-1]):
        lines.pop()
    while lines and _DRESS_LINE.match(lines[0]):
        lines.pop(0)
    return "\n".join(lines).strip()


def _judge(block: _Block, what: str, original: str, hit_limit: bool) -> tuple[str, str] | None:
    """Why a block cannot be used, as (outcome, detail); None if it can."""
    problem = _judge_text(block.text, what, original)
    if problem:
        return problem
    if block.closed == "eof" and hit_limit:
        return ("parse_failed", f"{what} was cut at the token limit before its [End]")
    return None


def _judge_text(text: str, what: str, original: str) -> tuple[str, str] | None:
    norm = _norm(text)
    bare = norm.strip("<>[](){}\"'*_` ")
    if not bare or bare in _EMPTY_WORDS:
        return ("empty", f"{what} is empty" + (f" ({text!r})" if text else ""))
    if bare in _GENERIC_PLACEHOLDERS or any(bare == _norm(p).strip("<>") for p in PLACEHOLDERS):
        return ("echo", f"{what} repeats the prompt's placeholder ({text[:60]!r})")
    if norm == _norm(original):
        return ("echo", f"{what} repeats the original unchanged")
    if _is_refusal(text):
        return ("refused", f"{what} is a refusal ({text[:80]!r})")
    return None


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().strip(".!?:;").strip().casefold()


def _is_refusal(text: str) -> bool:
    return bool(_REFUSAL.match(text.strip().replace("\u2019", "'")[:300]))


def _worst(failures: list[tuple[str, str]]) -> Parsed:
    """The most telling failure: a refusal, then an echo, then an empty field, then the rest."""
    order = {"refused": 0, "echo": 1, "empty": 2, "parse_failed": 3}
    outcome, detail = min(failures, key=lambda f: order[f[0]])
    return Parsed(outcome, detail=detail)


# ---------------------------------------------------------------- json

_FENCE = re.compile(r"```[ \t]*(?:json)?[ \t]*\n?(.*?)```", re.IGNORECASE | re.DOTALL)


def _parse_json(stage: str, reply: str, pair: Pair, hit_limit: bool) -> Parsed:
    text = reply.strip()
    fence = _FENCE.search(text)
    if fence:
        text = fence.group(1)
    start = text.find("{")
    if start < 0:
        if _is_refusal(reply):
            return Parsed("refused", detail="the teacher declined")
        return Parsed("parse_failed", detail="no JSON object in the reply")
    try:
        value, _end = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as exc:
        cut = " (the reply hit the token limit)" if hit_limit else ""
        return Parsed("parse_failed", detail=f"not valid JSON{cut}: {exc}")
    fields = {re.sub(r"[\s-]+", "_", str(k).strip().lower()): v for k, v in value.items()}
    keys = JSON_KEYS[stage]
    texts: dict[str, str] = {}
    for key in keys:
        item = fields.get(key)
        if item is None and key != "critique":
            if key not in fields:
                return Parsed("parse_failed", detail=f"the JSON object has no key {key!r}")
            return Parsed("empty", detail=f"{key!r} is null")
        if item is not None and not isinstance(item, str):
            return Parsed("parse_failed", detail=f"{key!r} is not a string")
        texts[key] = (item or "").strip()
    critique = texts.get("critique") or None
    if stage == "instruction":
        problem = _judge_text(
            texts["new_instruction"], "the new instruction", pair.instruction
        ) or _judge_text(texts["new_answer"], "the new answer", pair.output)
        reflection = Reflection(critique, texts["new_instruction"], "", texts["new_answer"])
    else:
        problem = _judge_text(texts["better_answer"], "the better answer", pair.output)
        reflection = Reflection(critique, None, pair.input, texts["better_answer"])
    if problem:
        return Parsed(problem[0], detail=problem[1])
    return Parsed("ok", reflection)
