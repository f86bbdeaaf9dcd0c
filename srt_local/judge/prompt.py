"""The judge's prompt (read from the files in prompts/), its reply schema and the reply's parser.

The prompt files hold the text with named placeholders ($instruction_a, $output_b...), substituted
once, so a stored text that contains `$name` is never expanded. The version id is the files' own
hash: any edit to the wording changes it, and with it the judge key, so verdicts made with one
wording are never mixed with another's.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from string import Template
from typing import Any

from srt_local.pairs import Pair
from srt_local.prompts import Prompt

STAGE = "judge"
VERDICTS = ("A", "B", "tie")
# The reason is short by design; bounded, a small embedded judge cannot run out of tokens in it.
REASON_CHARS = 400
_FILES = ("system.txt", "compare.txt")


@dataclass(frozen=True)
class Verdict:
    """A parsed reply: which example won (A, B or tie) and why."""

    verdict: str
    reason: str


@dataclass(frozen=True)
class ParsedVerdict:
    outcome: str  # ok | parse_failed | empty
    verdict: Verdict | None
    detail: str | None


@cache
def _texts() -> tuple[str, str]:
    folder = resources.files("srt_local.judge").joinpath("prompts")
    system, compare = (folder.joinpath(name).read_text(encoding="utf-8") for name in _FILES)
    return system.strip(), compare.strip()


def prompt_version() -> str:
    """'judge-' and the first 10 hex digits of the prompt files' sha256."""
    digest = hashlib.sha256("\0".join(_texts()).encode("utf-8")).hexdigest()
    return f"judge-{digest[:10]}"


def reply_schema() -> dict[str, Any]:
    """The JSON schema of a reply: a short reason first (thinking before deciding), then the verdict."""
    return {
        "type": "object",
        "properties": {
            "reason": {"type": "string", "minLength": 1, "maxLength": REASON_CHARS},
            "verdict": {"type": "string", "enum": list(VERDICTS)},
        },
        "required": ["reason", "verdict"],
    }


def _input(text: str) -> str:
    return f"#### Input\n{text}" if text.strip() else ""


def build_judge_prompt(a: Pair, b: Pair) -> Prompt:
    """The messages asking which of example A and example B is the better one."""
    system, compare = _texts()
    user = Template(compare).substitute(
        instruction_a=a.instruction,
        input_a=_input(a.input),
        output_a=a.output,
        instruction_b=b.instruction,
        input_b=_input(b.input),
        output_b=b.output,
    )
    # An empty input leaves a blank line where its section would be.
    user = re.sub(r"\n{3,}", "\n\n", user)
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return Prompt(STAGE, "json", prompt_version(), messages, reply_schema())


def parse_verdict(text: str | None) -> ParsedVerdict:
    """The verdict of a reply: strict JSON first, else the first {...} in it (a server that ignores
    the schema may wrap the object in prose)."""
    if text is None or not text.strip():
        return ParsedVerdict("empty", None, "the reply is empty")
    obj: Any = None
    try:
        obj = json.loads(text)
    except ValueError:
        match = re.search(r"\{.*\}", text, re.DOTALL)
        if match:
            try:
                obj = json.loads(match.group(0))
            except ValueError:
                obj = None
    if not isinstance(obj, dict):
        return ParsedVerdict("parse_failed", None, "the reply holds no JSON object")
    raw = obj.get("verdict")
    verdict = next(
        (v for v in VERDICTS if isinstance(raw, str) and raw.strip().lower() == v.lower()), None
    )
    if verdict is None:
        return ParsedVerdict("parse_failed", None, f"verdict {raw!r} is not A, B or tie")
    reason = obj.get("reason")
    reason_text = reason.strip() if isinstance(reason, str) else ""
    return ParsedVerdict("ok", Verdict(verdict, reason_text), None)
