"""The teacher's prompts: instruction reflection and response reflection, in two output modes.

Written for srt-local from the method's description (METHOD.md, "Teacher prompts"): the teacher
plays an exacting quality checker, analyses the pair by the method's criteria, then writes its
rewrite between markers (`markers` mode) or into a JSON object constrained by a schema (`json`
mode). The pair comes first and the task after it, so a server's prompt cache holds only the short
system line (which keeps the server's prompt_eval_count comparable with our count of the prompt).

Every prompt has a version id that is stored with each reply; change the text, change the id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from srt_local.pairs import Pair

STAGES = ("instruction", "response")

# The placeholders shown in the format example; a reply that repeats one is an echo, not an answer.
PLACEHOLDER_INSTRUCTION = "<the new instruction>"
PLACEHOLDER_ANSWER = "<the answer to the new instruction>"
PLACEHOLDER_BETTER = "<the better answer>"
PLACEHOLDERS = (PLACEHOLDER_INSTRUCTION, PLACEHOLDER_ANSWER, PLACEHOLDER_BETTER)

# JSON keys per stage, in the order the teacher should write them (analysis before rewriting).
JSON_KEYS = {
    "instruction": ("critique", "new_instruction", "new_answer"),
    "response": ("critique", "better_answer"),
}

# How a bounded reply's characters are shared out between its fields.
SHARES = {
    "instruction": {"critique": 0.25, "new_instruction": 0.2, "new_answer": 0.55},
    "response": {"critique": 0.3, "better_answer": 0.7},
}
# llama.cpp's grammar parser refuses a bounded repetition much longer than this.
MAX_FIELD_CHARS = 1000

_SYSTEM = (
    "You are a precise, demanding and hard-to-please reviewer of training data for language "
    "models. You find every weakness in an instruction and its answer, and you rewrite them well."
)

_INSTRUCTION_TASK = """\
1. Explain why this instruction is weak. Judge it on the complexity of its topic, the level of \
detail it asks for, the knowledge it needs, how ambiguous it is, and whether it calls for \
reasoning or problem solving. Then explain why the answer is weak for this instruction, judging \
its helpfulness, relevance, accuracy and level of detail. Finish by explaining how the weak \
instruction led to the weak answer.
2. From that analysis, write one new instruction: complete, more demanding, and not something \
that can be answered in a line. Keep it on the same subject, but make it stand alone: someone who \
never saw the original instruction must be able to answer it.
3. Answer your new instruction as fully and carefully as you can."""

_RESPONSE_TASK = """\
1. Judge the answer: how helpful, relevant and accurate it is, and whether its level of detail \
fits the instruction. Say precisely what is missing, wrong or unclear.
2. Write a better answer to the same instruction: complete, accurate and detailed."""

_INSTRUCTION_MARKERS = f"""\
Write your analysis first. Then put the new instruction between the markers [New Instruction] \
and [End], and its answer between [New Answer] and [End], exactly like this:

[New Instruction]
{PLACEHOLDER_INSTRUCTION}
[End]

[New Answer]
{PLACEHOLDER_ANSWER}
[End]"""

_RESPONSE_MARKERS = f"""\
Write your analysis first. Then put the better answer between the markers [Better Answer] and \
[End], exactly like this:

[Better Answer]
{PLACEHOLDER_BETTER}
[End]"""

_INSTRUCTION_JSON = """\
Reply with one JSON object and nothing else. Its keys, in this order: "critique" (your analysis \
from step 1), "new_instruction" (the instruction from step 2) and "new_answer" (your answer from \
step 3)."""

_RESPONSE_JSON = """\
Reply with one JSON object and nothing else. Its keys, in this order: "critique" (your judgement \
from step 1) and "better_answer" (the answer from step 2)."""


@dataclass(frozen=True)
class Prompt:
    """What is sent to the teacher for one pair, and the id of the text that made it."""

    stage: str
    output_mode: str
    version: str
    messages: list[dict[str, str]]
    schema: dict[str, Any] | None  # the JSON schema to constrain the reply to (json mode)


def prompt_version(stage: str, output_mode: str) -> str:
    """The version id of a stage's prompt in an output mode, e.g. 'instr-v1-markers'."""
    _check(stage, output_mode)
    return f"{'instr' if stage == 'instruction' else 'resp'}-v1-{output_mode}"


def response_schema(stage: str, max_chars: int | None = None) -> dict[str, Any]:
    """The JSON schema of a json-mode reply: every key a required string.

    `max_chars` bounds the strings' total length (shared out by `SHARES`), for a small model whose
    strings could otherwise run past num_predict and leave the JSON unclosed.
    """
    properties: dict[str, Any] = {}
    for key in JSON_KEYS[stage]:
        prop: dict[str, Any] = {"type": "string"}
        if max_chars:
            limit = min(MAX_FIELD_CHARS, max(16, int(max_chars * SHARES[stage][key])))
            prop.update(minLength=1, maxLength=limit)
        properties[key] = prop
    return {"type": "object", "properties": properties, "required": list(JSON_KEYS[stage])}


def build_prompt(stage: str, pair: Pair, output_mode: str, max_chars: int | None = None) -> Prompt:
    """The system and user messages asking the teacher to reflect on `pair` at `stage`;
    `max_chars` bounds the strings of a json-mode reply (see response_schema)."""
    _check(stage, output_mode)
    sections = [
        "Here is one example from an instruction-tuning dataset.",
        f"### Instruction\n{pair.instruction}",
    ]
    if pair.input.strip():
        sections.append(f"### Input\n{pair.input}")
    sections.append(f"### Answer\n{pair.output}")
    if stage == "instruction":
        task = _INSTRUCTION_TASK
        form = _INSTRUCTION_MARKERS if output_mode == "markers" else _INSTRUCTION_JSON
    else:
        task = _RESPONSE_TASK
        form = _RESPONSE_MARKERS if output_mode == "markers" else _RESPONSE_JSON
    sections.append(f"### Your task\n{task}")
    sections.append(f"### Format\n{form}")
    messages = [
        {"role": "system", "content": _SYSTEM},
        {"role": "user", "content": "\n\n".join(sections)},
    ]
    schema = response_schema(stage, max_chars) if output_mode == "json" else None
    return Prompt(stage, output_mode, prompt_version(stage, output_mode), messages, schema)


def fixed_texts() -> tuple[str, ...]:
    """The prompts' own wording, without any pair: the system line, both tasks and every format
    instruction. A reply that repeats it is an echo of the prompt, not a reflection."""
    return (
        _SYSTEM,
        "Here is one example from an instruction-tuning dataset.",
        _INSTRUCTION_TASK,
        _RESPONSE_TASK,
        _INSTRUCTION_MARKERS,
        _RESPONSE_MARKERS,
        _INSTRUCTION_JSON,
        _RESPONSE_JSON,
    )


def prompt_versions(output_mode: str) -> tuple[str, ...]:
    """The version ids of both stages' prompts in one output mode (part of a teacher's key)."""
    return tuple(prompt_version(stage, output_mode) for stage in STAGES)


def estimate_tokens(messages: list[dict[str, str]]) -> int:
    """A tokenizer-free count of a chat prompt's tokens: about 4 characters of ASCII per token,
    about 1.5 characters per token elsewhere (CJK and accented text split finer), plus the chat
    template's few tokens per message."""
    total = 0.0
    for message in messages:
        text = message.get("content", "")
        ascii_chars = sum(1 for ch in text if ord(ch) < 128)
        total += ascii_chars / 4 + (len(text) - ascii_chars) / 1.5 + 4
    return round(total)


def _check(stage: str, output_mode: str) -> None:
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}: expected instruction or response")
    if output_mode not in ("markers", "json"):
        raise ValueError(f"unknown output mode {output_mode!r}: expected markers or json")
