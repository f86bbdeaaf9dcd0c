"""The merge stage (paper profile): the teacher rewrites an instruction and its input as one
instruction, as the reference pipeline's data has no input field. This module reads the reply.

Markers mode takes the text between `[Merged Instruction]` and `[End]` (case and markdown dress
around the marker are tolerated; a bare word "End" ends nothing); json mode the
"merged_instruction" key of the first JSON object. Any script is accepted.
"""

from __future__ import annotations

import json
import re

from srt_local.pairs import Pair
from srt_local.parsing import Parsed
from srt_local.prompts import PLACEHOLDER_MERGED
from srt_local.reflection import Reflection

_OPEN = re.compile(
    r"(?:\*\*|__|#+[ \t]*)?[\[【［][ \t]*merged[ \t_-]+instruction[ \t]*[\]】］][ \t]*[:：]?(?:\*\*|__)?",
    re.IGNORECASE,
)
_END = re.compile(r"(?:\*\*|__)?[\[【［][ \t]*end[ \t]*[\]】］](?:\*\*|__)?", re.IGNORECASE)
_FENCE = re.compile(r"```[ \t]*(?:json)?[ \t]*\n?(.*?)```", re.IGNORECASE | re.DOTALL)


def parse_merge_reply(
    output_mode: str, reply: str | None, pair: Pair, *, hit_limit: bool = False
) -> Parsed:
    """The merged instruction of `pair` (input "", the pair's response kept), or why not."""
    if reply is None or not reply.strip():
        return Parsed("empty", detail="the reply is empty")
    text = _json_text(reply) if output_mode == "json" else _marker_text(reply, hit_limit)
    if isinstance(text, Parsed):
        return text
    merged = text.strip()
    if not merged:
        return Parsed("empty", detail="the merged instruction is empty")
    if merged.strip("<> ").casefold() == PLACEHOLDER_MERGED.strip("<>").casefold():
        return Parsed("echo", detail="the merged instruction repeats the prompt's placeholder")
    if " ".join(merged.split()) == " ".join(pair.instruction.split()):
        return Parsed("echo", detail="the merged instruction is the instruction, input left out")
    return Parsed("ok", Reflection(None, merged, "", pair.output))


def _marker_text(reply: str, hit_limit: bool) -> str | Parsed:
    opened = _OPEN.search(reply)
    if opened is None:
        return Parsed("parse_failed", detail="no [Merged Instruction] marker in the reply")
    rest = reply[opened.end() :]
    end = _END.search(rest)
    if end is None and hit_limit:
        return Parsed("parse_failed", detail="the reply was cut at the token limit before [End]")
    return rest[: end.start()] if end else rest


def _json_text(reply: str) -> str | Parsed:
    fence = _FENCE.search(reply)
    text = fence.group(1) if fence else reply
    start = text.find("{")
    if start < 0:
        return Parsed("parse_failed", detail="no JSON object in the reply")
    try:
        value, _ = json.JSONDecoder(strict=False).raw_decode(text[start:])
    except json.JSONDecodeError as exc:
        return Parsed("parse_failed", detail=f"not valid JSON: {exc}")
    item = value.get("merged_instruction") if isinstance(value, dict) else None
    if not isinstance(item, str):
        return Parsed("parse_failed", detail="the JSON object has no string 'merged_instruction'")
    return item
