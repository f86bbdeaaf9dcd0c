"""Parse a teacher's reply into a Reflection, or say precisely why it cannot be used.

Markers mode is strict about the markers and tolerant of their dress: `[New Instruction]`,
`[New Answer]`, `[Better Answer]` and `[End]` must be there in square brackets, but case, inner
spaces, a markdown heading or bold around them, a trailing colon, and a missing final `[End]` at the
very end of the reply are all accepted. A bare word "End" (as in "The Endangered...") never ends a
block. JSON mode reads the first JSON object of the reply (a ```json fence is fine).

A reply cannot pass by repeating its own prompt: a field (or, with no usable block, the whole
reply) that repeats the prompt's wording, a placeholder anywhere in a field, a field holding a
marker's name, and a field too short to be an instruction (3 words; a character counts as a word
in scripts written without spaces) or an answer (2) are all failures with their reason. That is
what a server echoing the prompt's tail ("... between the markers [New Instruction] and [End],
and its answer between [New Answer] and [End] ...") produces. Markers inside a code block that
opens within a field are the field's text; a code block wrapping the whole formatted reply is
dress.

Outcomes: ok; empty (nothing, or "N/A", where a field should be); echo (our placeholder text, the
prompt's wording or the original pair handed back); refused (the teacher declined); parse_failed
(anything else, with the reason in `detail`).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass

from srt_local.pairs import Pair
from srt_local.prompts import JSON_KEYS, PLACEHOLDERS, fixed_texts
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
_FENCE_LINE = re.compile(r"^[ \t]*(?:```|~~~)[^\n]*$", re.MULTILINE)

# What is left of a marker that was not recognised as one: "[/New Answer]", "[End of answer",
# "New Instruction]"... A field holding one is a broken reply, not an instruction or answer.
_MARKER_REMNANT = re.compile(
    r"[\[【［<][ \t]*/?[ \t]*(?:new[ \t_-]*instruction|new[ \t_-]*answer|better[ \t_-]*answer|end)\b"
    r"|\b(?:new[ \t_-]*instruction|new[ \t_-]*answer|better[ \t_-]*answer)[ \t]*[\]】］>]",
    re.IGNORECASE,
)

# The headings our prompt puts around the pair and the task: a field holding one copies the prompt.
_PROMPT_SECTION = re.compile(
    r"^[ \t]*#{1,6}[ \t]*(?:instruction|input|answer|your task|format)[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
_CODE_BLOCK = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1[^\n]*$", re.MULTILINE | re.DOTALL)

# Scripts written without spaces between words: each character counts as a word.
_UNSPACED = re.compile(
    "[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uf900-\ufaff\U00020000-\U0002fa1f]"
)
# The fewest words a new instruction, and an answer, can have.
MIN_WORDS = {"instruction": 3, "answer": 2}
# A run of this many words from the prompt's own wording is an echo of the prompt.
ECHO_WORDS = 7

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
    matches = _markers(reply)
    blocks = _blocks(reply, matches)
    if not blocks:
        if _is_refusal(reply):
            return Parsed("refused", detail="the teacher declined")
        if _echoes_prompt(reply):
            return Parsed("echo", detail="the reply repeats the prompt's instructions")
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
    if _echoes_prompt(reply):
        failures.append(("echo", "the reply repeats the prompt's instructions"))
    return _worst(failures)


def _markers(reply: str) -> list[re.Match[str]]:
    """The markers of `reply`, less those inside a code block that opened within a field."""
    fences = [m.start() for m in _FENCE_LINE.finditer(reply)]
    spans = [
        (fences[i], fences[i + 1] if i + 1 < len(fences) else len(reply))
        for i in range(0, len(fences), 2)
    ]
    kept: list[re.Match[str]] = []
    open_at: int | None = None  # where the field being read began, if one is open
    for match in _MARKER.finditer(reply):
        if open_at is not None and any(
            open_at <= start < match.start() < end for start, end in spans
        ):
            continue
        kept.append(match)
        open_at = None if match.group(1).lower() == "end" else match.end()
    return kept


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
    # Half of a code fence wrapping the formatted reply is dress; a whole code block is content.
    if sum(1 for line in lines if _FENCE_LINE.match(line)) % 2 and lines:
        if _FENCE_LINE.match(lines[0]):
            lines.pop(0)
        elif _FENCE_LINE.match(lines[-1]):
            lines.pop()
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
    if bare in _GENERIC_PLACEHOLDERS or any(_norm(p) in norm for p in PLACEHOLDERS):
        return ("echo", f"{what} repeats the prompt's placeholder ({text[:60]!r})")
    if norm == _norm(original):
        return ("echo", f"{what} repeats the original unchanged")
    if _is_refusal(text):
        return ("refused", f"{what} is a refusal ({text[:80]!r})")
    if _echoes_prompt(text):
        return ("echo", f"{what} repeats the prompt's instructions ({text[:60]!r})")
    if _PROMPT_SECTION.search(text):
        return ("echo", f"{what} repeats the prompt's sections ({text[:60]!r})")
    remnant = _MARKER_REMNANT.search(_CODE_BLOCK.sub("", text))  # code may hold anything
    if remnant:
        return ("parse_failed", f"{what} holds a marker's name ({remnant.group(0)!r})")
    fewest = MIN_WORDS["instruction" if "instruction" in what else "answer"]
    if count_words(text) < fewest:
        return (
            "parse_failed",
            f"{what} is too short to be one ({count_words(text)} word(s), at least {fewest}: "
            f"{text[:60]!r})",
        )
    return None


def count_words(text: str) -> int:
    """Words of `text`, each character of a script written without spaces counting as one."""
    unspaced = len(_UNSPACED.findall(text))
    rest = _UNSPACED.sub(" ", text)
    return unspaced + len(re.findall(r"\w+", rest))


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.casefold())


def _runs(words: list[str]) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + ECHO_WORDS]) for i in range(len(words) - ECHO_WORDS + 1)}


@functools.cache
def _prompt_runs() -> frozenset[tuple[str, ...]]:
    """Every run of ECHO_WORDS words in the prompts' own wording (computed once)."""
    runs: set[tuple[str, ...]] = set()
    for fixed in fixed_texts():
        runs |= _runs(_words(fixed))
    return frozenset(runs)


def _echoes_prompt(text: str) -> bool:
    """Whether `text` repeats a run of ECHO_WORDS words of the prompt's own wording."""
    return not _runs(_words(text)).isdisjoint(_prompt_runs())


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
        if _echoes_prompt(reply):
            return Parsed("echo", detail="the reply repeats the prompt's instructions")
        return Parsed("parse_failed", detail="no JSON object in the reply")
    try:
        # strict=False: small models put raw newlines inside strings; the text is still meant.
        value, _end = json.JSONDecoder(strict=False).raw_decode(text[start:])
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
