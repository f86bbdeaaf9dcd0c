"""The teacher's prompts: instruction reflection, response reflection and the merge of an input
into its instruction, in two output modes, rendered from a prompt set.

A prompt set is one TOML file (`prompt_sets/srt.toml` ships; `srt prompts copy` puts an editable copy
in the user's config folder, which wins over a shipped set of the same name). Each stage has a
system line, a user message with named placeholders, and the format text of each output mode. The
shipped set was written for srt-local from the method's description (docs/METHOD.md, "Teacher
prompts"): the pair comes first and the task after it, so a server's prompt cache holds only the
short system line (which keeps the server's prompt_eval_count comparable with our count).

A set's content hash is in every prompt's version id, stored with each reply, and in the teacher's
key: replies made with different prompts are never mixed.
"""

from __future__ import annotations

import functools
import hashlib
import re
import shutil
import string
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from srt_local import paths
from srt_local.errors import SrtError
from srt_local.pairs import Pair

STAGES = ("instruction", "response")  # the two reflections
ALL_STAGES = (*STAGES, "merge")
DEFAULT_SET = "srt"
PLACEHOLDER_FIELDS = frozenset({"instruction", "input", "output", "input_block", "format"})
_STAGE_KEYS = ("system", "user", "markers", "json")

# The placeholders shown in the format example; a reply that repeats one is an echo, not an answer.
PLACEHOLDER_INSTRUCTION = "<the new instruction>"
PLACEHOLDER_ANSWER = "<the answer to the new instruction>"
PLACEHOLDER_BETTER = "<the better answer>"
PLACEHOLDER_MERGED = "<the merged instruction>"
PLACEHOLDERS = (PLACEHOLDER_INSTRUCTION, PLACEHOLDER_ANSWER, PLACEHOLDER_BETTER, PLACEHOLDER_MERGED)

# JSON keys per stage, in the order the teacher should write them (analysis before rewriting).
JSON_KEYS = {
    "instruction": ("critique", "new_instruction", "new_answer"),
    "response": ("critique", "better_answer"),
    "merge": ("merged_instruction",),
}

# How a bounded reply's characters are shared out between its fields.
SHARES = {
    "instruction": {"critique": 0.25, "new_instruction": 0.2, "new_answer": 0.55},
    "response": {"critique": 0.3, "better_answer": 0.7},
    "merge": {"merged_instruction": 1.0},
}
# llama.cpp's grammar parser refuses a bounded repetition much longer than this.
MAX_FIELD_CHARS = 1000


class PromptSetError(SrtError, ValueError):
    """A prompt set that cannot be found or used; the message names the file and key."""


@dataclass(frozen=True)
class PromptSet:
    """One prompt set: each stage's texts, and the hash of the file they came from."""

    name: str
    path: Path
    user_copy: bool  # from the user's config folder (else shipped)
    description: str
    input_block: str
    stages: dict[str, dict[str, str]]  # stage -> system, user, markers, json
    digest: str  # sha256 of the file's bytes, first 12 hex digits

    def render(self, stage: str, key: str, fields: dict[str, str]) -> str:
        return self.stages[stage][key].format_map(fields)


def user_sets_dir() -> Path:
    """Where `srt prompts copy` puts sets to edit (under SRT_HOME's config when set)."""
    return paths.config_dir() / "prompts"


def _shipped_dir() -> Path:
    return Path(str(resources.files("srt_local") / "prompt_sets"))


def _set_files() -> dict[str, tuple[Path, bool]]:
    found = {p.stem: (p, False) for p in sorted(_shipped_dir().glob("*.toml"))}
    user = user_sets_dir()
    if user.is_dir():
        found.update({p.stem: (p, True) for p in sorted(user.glob("*.toml"))})
    return found


def list_prompt_sets() -> list[PromptSet]:
    """Every set, the user's first choice of each name (a user copy hides a shipped namesake)."""
    return [_read_set(name, path, user) for name, (path, user) in sorted(_set_files().items())]


def load_prompt_set(name: str | None = None) -> PromptSet:
    """The set called `name` (default: the shipped `srt`), the user's copy first."""
    name = name or DEFAULT_SET
    files = _set_files()
    if name not in files:
        known = ", ".join(sorted(files))
        raise PromptSetError(
            f"no prompt set {name!r} (known: {known}; user sets live in {user_sets_dir()})"
        )
    path, user = files[name]
    return _read_set(name, path, user)


def copy_prompt_set(name: str, new: str | None = None) -> Path:
    """Copy set `name` into the user's folder as `new` (default: the same name); the new path."""
    source = load_prompt_set(name)
    target_name = new or name
    if not target_name.replace("-", "").replace("_", "").isalnum():
        raise PromptSetError(
            f"prompt set name {target_name!r}: use letters, digits, '-' and '_' only"
        )
    target = user_sets_dir() / f"{target_name}.toml"
    if target.exists():
        raise PromptSetError(f"{target} already exists: edit it, or copy under another name")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source.path, target)
    return target


def _read_set(name: str, path: Path, user: bool) -> PromptSet:
    raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PromptSetError(f"{path}: not a valid TOML file: {exc}") from None

    def text(table: dict[str, Any], key: str, where: str) -> str:
        value = table.get(key)
        if not isinstance(value, str) or not value.strip():
            raise PromptSetError(f"{path}: [{where}] key {key!r}: a non-empty string is required")
        _check_fields(value, path, where, key)
        return value

    stages: dict[str, dict[str, str]] = {}
    for stage in ALL_STAGES:
        table = data.get(stage)
        if not isinstance(table, dict):
            raise PromptSetError(f"{path}: table [{stage}] is missing")
        unknown = set(table) - set(_STAGE_KEYS)
        if unknown:
            allowed = ", ".join(_STAGE_KEYS)
            raise PromptSetError(
                f"{path}: [{stage}] key {sorted(unknown)[0]!r}: unknown key (allowed: {allowed})"
            )
        stages[stage] = {key: text(table, key, stage) for key in _STAGE_KEYS}
        if "{format}" not in stages[stage]["user"]:
            raise PromptSetError(
                f"{path}: [{stage}] key 'user': needs a {{format}} placeholder, where the "
                "reply's format (markers or JSON) is written"
            )
    block = data.get("input_block", "")
    if not isinstance(block, str):
        raise PromptSetError(f"{path}: key 'input_block': expected a string")
    _check_fields(block, path, "top level", "input_block")
    return PromptSet(
        name=name,
        path=path,
        user_copy=user,
        description=str(data.get("description", "")),
        input_block=block,
        stages=stages,
        digest=hashlib.sha256(raw).hexdigest()[:12],
    )


def _check_fields(value: str, path: Path, where: str, key: str) -> None:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
    except ValueError as exc:
        raise PromptSetError(
            f"{path}: [{where}] key {key!r}: {exc} (write a literal brace as {{{{ or }}}})"
        ) from None
    for field_name in fields:
        if field_name not in PLACEHOLDER_FIELDS:
            allowed = ", ".join("{" + f + "}" for f in sorted(PLACEHOLDER_FIELDS))
            raise PromptSetError(
                f"{path}: [{where}] key {key!r}: unknown placeholder {{{field_name}}} "
                f"(allowed: {allowed})"
            )


@dataclass(frozen=True)
class Prompt:
    """What is sent to the teacher for one pair, and the id of the text that made it."""

    stage: str
    output_mode: str
    version: str
    messages: list[dict[str, str]]
    schema: dict[str, Any] | None  # the JSON schema to constrain the reply to (json mode)


_ABBREVIATIONS = {"instruction": "instr", "response": "resp", "merge": "merge"}


def prompt_version(stage: str, output_mode: str, prompt_set: PromptSet | None = None) -> str:
    """The version id of a stage's prompt, e.g. 'instr-srt@0123456789ab-markers'."""
    _check(stage, output_mode)
    chosen = prompt_set or load_prompt_set()
    return f"{_ABBREVIATIONS[stage]}-{chosen.name}@{chosen.digest}-{output_mode}"


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


def build_prompt(
    stage: str,
    pair: Pair,
    output_mode: str,
    max_chars: int | None = None,
    prompt_set: PromptSet | None = None,
) -> Prompt:
    """The system and user messages asking the teacher for `stage` on `pair`, from `prompt_set`
    (default: the shipped set); `max_chars` bounds the strings of a json-mode reply."""
    _check(stage, output_mode)
    chosen = prompt_set or load_prompt_set()
    fields = {"instruction": pair.instruction, "input": pair.input, "output": pair.output}
    fields["input_block"] = (
        chosen.input_block.format_map({**fields, "input_block": "", "format": ""})
        if pair.input.strip()
        else ""
    )
    fields["format"] = chosen.stages[stage][output_mode]
    messages = [
        {"role": "system", "content": chosen.stages[stage]["system"]},
        {"role": "user", "content": chosen.render(stage, "user", fields)},
    ]
    schema = response_schema(stage, max_chars) if output_mode == "json" else None
    return Prompt(stage, output_mode, prompt_version(stage, output_mode, chosen), messages, schema)


@functools.cache
def fixed_texts() -> tuple[str, ...]:
    """The prompts' own wording, without any pair: every set's system lines, the fixed parts of
    its task texts and every format instruction. A reply that repeats it is an echo of the
    prompt, not a reflection. (Read once a process: the sets a run uses are read at its start.)"""
    texts: list[str] = []
    for prompt_set in list_prompt_sets():
        for stage in prompt_set.stages.values():
            for key in _STAGE_KEYS:
                for part in re.split(r"\{[a-z_]+\}", stage.get(key, "")):
                    if part.strip():
                        texts.append(part.strip())
    return tuple(dict.fromkeys(texts))


def prompt_versions(output_mode: str, prompt_set: PromptSet | None = None) -> tuple[str, ...]:
    """The version ids of every stage's prompt in one output mode (part of a teacher's key)."""
    return tuple(prompt_version(stage, output_mode, prompt_set) for stage in ALL_STAGES)


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
    if stage not in ALL_STAGES:
        raise ValueError(f"unknown stage {stage!r}: expected instruction, response or merge")
    if output_mode not in ("markers", "json"):
        raise ValueError(f"unknown output mode {output_mode!r}: expected markers or json")
