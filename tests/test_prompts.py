"""The teacher prompts: what each stage and output mode asks for, and their version ids."""

from __future__ import annotations

import pytest

from srt_local.pairs import Pair
from srt_local.parsing import parse_reply
from srt_local.prompts import (
    MAX_FIELD_CHARS,
    PLACEHOLDERS,
    build_prompt,
    estimate_tokens,
    prompt_version,
    response_schema,
)

PAIR = Pair("Name three primary colors.", "", "Red, blue and yellow.")
WITH_INPUT = Pair("Summarize the text.", "The cat sat on the mat all day.", "A cat sat.")
STAGES = ("instruction", "response")
MODES = ("markers", "json")


def test_every_prompt_has_its_own_version_id() -> None:
    versions = {prompt_version(s, m) for s in STAGES for m in MODES}
    assert len(versions) == 4
    assert all(v.split("-")[1].startswith("srt@") for v in versions)
    for stage in STAGES:
        for mode in MODES:
            assert build_prompt(stage, PAIR, mode).version == prompt_version(stage, mode)


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("mode", MODES)
def test_prompt_shows_the_pair_and_the_persona(stage: str, mode: str) -> None:
    prompt = build_prompt(stage, PAIR, mode)
    system, user = prompt.messages
    assert system["role"] == "system" and "demanding" in system["content"]
    assert user["role"] == "user"
    assert PAIR.instruction in user["content"] and PAIR.output in user["content"]
    assert "### Input" not in user["content"]  # no empty input section
    # The pair comes before the task, so only the system line is a shared prefix between calls.
    assert user["content"].index(PAIR.output) < user["content"].index("### Your task")


def test_input_is_shown_when_present() -> None:
    user = build_prompt("instruction", WITH_INPUT, "markers").messages[1]["content"]
    assert f"### Input\n{WITH_INPUT.input}" in user
    assert (
        user.index(WITH_INPUT.instruction) < user.index(WITH_INPUT.input) < user.index("### Answer")
    )


def test_instruction_stage_asks_for_the_methods_criteria_and_markers() -> None:
    user = build_prompt("instruction", PAIR, "markers").messages[1]["content"]
    for criterion in (
        "complexity",
        "level of detail",
        "knowledge",
        "ambiguous",
        "reasoning",
        "helpfulness",
        "relevance",
        "accuracy",
        "stand alone",
    ):
        assert criterion in user
    for marker in ("[New Instruction]", "[New Answer]", "[End]"):
        assert marker in user
    assert "[Better Answer]" not in user


def test_response_stage_asks_for_a_better_answer() -> None:
    user = build_prompt("response", PAIR, "markers").messages[1]["content"]
    assert "[Better Answer]" in user and "[New Instruction]" not in user
    for criterion in ("helpful", "relevant", "accurate", "detail"):
        assert criterion in user


@pytest.mark.parametrize("stage", STAGES)
def test_json_mode_has_a_schema_and_names_its_keys(stage: str) -> None:
    prompt = build_prompt(stage, PAIR, "json")
    assert prompt.schema is not None
    keys = prompt.schema["required"]
    assert keys[0] == "critique"  # analysis before the rewrite
    for key in keys:
        assert f'"{key}"' in prompt.messages[1]["content"]
        assert prompt.schema["properties"][key] == {"type": "string"}
    assert "[End]" not in prompt.messages[1]["content"]
    assert build_prompt(stage, PAIR, "markers").schema is None


def test_a_bounded_schema_shares_out_the_characters() -> None:
    schema = response_schema("instruction", max_chars=1440)
    limits = [p["maxLength"] for p in schema["properties"].values()]
    assert sum(limits) <= 1440 and all(p["minLength"] == 1 for p in schema["properties"].values())
    assert limits[2] > limits[0]  # the answer gets the biggest share
    assert all(
        p["maxLength"] <= MAX_FIELD_CHARS
        for p in response_schema("response", max_chars=100_000)["properties"].values()
    )


def test_the_format_example_itself_is_an_echo() -> None:
    """A teacher that hands back our example unchanged gets `echo`, not a reflection."""
    for stage in STAGES:
        user = build_prompt(stage, PAIR, "markers").messages[1]["content"]
        example = user[user.index("exactly like this:") :]
        assert parse_reply(stage, "markers", example, PAIR).outcome == "echo"
    assert len(PLACEHOLDERS) == 4  # the merge stage's is checked in test_prompt_sets


def test_estimate_tokens_counts_wide_scripts_finer() -> None:
    english = [{"role": "user", "content": "word " * 400}]
    chinese = [{"role": "user", "content": "词" * 400}]
    assert 480 <= estimate_tokens(english) <= 520
    assert estimate_tokens(chinese) > estimate_tokens([{"role": "user", "content": "w" * 400}]) * 2


def test_unknown_stage_or_mode_is_an_error() -> None:
    with pytest.raises(ValueError, match="stage"):
        build_prompt("both", PAIR, "markers")
    with pytest.raises(ValueError, match="output mode"):
        build_prompt("response", PAIR, "yaml")
