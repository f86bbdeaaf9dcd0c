"""Prompt sets as files: loading, copying to edit, validation, the key, and the merge reply."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from srt_local.cli import cli
from srt_local.config import TeacherSpec
from srt_local.merge import parse_merge_reply
from srt_local.pairs import Pair
from srt_local.prompts import (
    ALL_STAGES,
    PromptSetError,
    build_prompt,
    copy_prompt_set,
    list_prompt_sets,
    load_prompt_set,
)
from srt_local.teachers.chat import teacher_key

WITH_INPUT = Pair("Translate the sentence.", "The cat sleeps.", "Le chat dort.")
KOREAN = Pair(
    "다음 문장을 요약하세요.", "고양이가 하루 종일 매트 위에 앉아 있었다.", "고양이가 앉아 있었다."
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SRT_HOME", str(tmp_path))
    return tmp_path


def test_the_shipped_set_has_every_stage_and_keeps_the_language(home: Path) -> None:
    shipped = load_prompt_set()
    assert shipped.name == "srt" and not shipped.user_copy
    for stage in ALL_STAGES:
        user = build_prompt(stage, KOREAN, "markers").messages[1]["content"]
        assert "language" in user  # the reflection keeps the original's language
        assert KOREAN.instruction in user and KOREAN.input in user
        assert "{" not in user.replace("{{", "")  # every placeholder was filled


def test_merge_prompt_shows_instruction_and_input_but_not_the_answer(home: Path) -> None:
    user = build_prompt("merge", WITH_INPUT, "markers").messages[1]["content"]
    assert WITH_INPUT.input in user and WITH_INPUT.output not in user
    assert "[Merged Instruction]" in user


def test_a_copy_is_edited_in_the_users_folder_and_changes_the_teacher_key(home: Path) -> None:
    target = copy_prompt_set("srt", "mine")
    assert target == home / "config" / "prompts" / "mine.toml"
    spec = TeacherSpec(name="t", backend="ollama", model="m")
    same = teacher_key("ollama", "m", None, spec, {}, prompt_set=load_prompt_set("mine"))
    assert same == teacher_key("ollama", "m", None, spec, {}, prompt_set=load_prompt_set("srt"))
    target.write_text(target.read_text().replace("hard-to-please", "exacting"), encoding="utf-8")
    edited = load_prompt_set("mine")
    assert edited.user_copy and edited.digest != load_prompt_set("srt").digest
    assert teacher_key("ollama", "m", None, spec, {}, prompt_set=edited) != same
    assert (
        "exacting"
        in build_prompt("response", WITH_INPUT, "json", prompt_set=edited).messages[0]["content"]
    )
    assert {s.name for s in list_prompt_sets()} == {"srt", "mine"}
    with pytest.raises(PromptSetError, match="already exists"):
        copy_prompt_set("srt", "mine")


def test_a_paper_profile_teacher_has_its_own_key(home: Path) -> None:
    plain = TeacherSpec(name="t", backend="ollama", model="m")
    paper = TeacherSpec(name="t", backend="ollama", model="m", reask="greedy", trim="reference")
    assert teacher_key("ollama", "m", None, plain, {}) != teacher_key(
        "ollama", "m", None, paper, {}
    )


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "### Instruction\n{instruction}",
            "### Instruction\n{instrution}",
            r"\[instruction\] key 'user': unknown placeholder \{instrution\}",
        ),
        ("### Format\n{format}", "### Format\n", r"\[instruction\] key 'user': needs a \{format\}"),
        ('[merge]\nsystem = "', '[merge]\nsytem = "', r"\[merge\] key 'sytem': unknown key"),
    ],
)
def test_a_broken_set_names_file_table_and_key(
    home: Path, old: str, new: str, message: str
) -> None:
    target = copy_prompt_set("srt", "broken")
    target.write_text(target.read_text().replace(old, new, 1), encoding="utf-8")
    with pytest.raises(PromptSetError, match=message) as info:
        load_prompt_set("broken")
    assert str(target) in str(info.value)


def test_an_unknown_set_lists_the_known_ones(home: Path) -> None:
    with pytest.raises(PromptSetError, match=r"no prompt set 'nope' \(known: srt"):
        load_prompt_set("nope")


def test_merge_replies_in_any_script(home: Path) -> None:
    merged = "다음 문장을 요약하세요: 고양이가 하루 종일 매트 위에 앉아 있었다."
    parsed = parse_merge_reply("markers", f"**[Merged Instruction]**\n{merged}\n[End]", KOREAN)
    assert parsed.outcome == "ok" and parsed.reflection is not None
    assert (parsed.reflection.instruction, parsed.reflection.input) == (merged, "")
    assert parsed.reflection.output == KOREAN.output
    as_json = parse_merge_reply(
        "json", f'```json\n{{"merged_instruction": "{merged}"}}\n```', KOREAN
    )
    assert as_json.outcome == "ok"
    example = build_prompt("merge", KOREAN, "markers").messages[1]["content"]
    echoed = example[example.index("exactly like this:") :]
    assert parse_merge_reply("markers", echoed, KOREAN).outcome == "echo"
    assert (
        parse_merge_reply(
            "markers", f"[Merged Instruction]\n{KOREAN.instruction}\n[End]", KOREAN
        ).outcome
        == "echo"
    )
    assert parse_merge_reply("markers", "no markers here", KOREAN).outcome == "parse_failed"
    assert (
        parse_merge_reply("markers", "[Merged Instruction]\nhalf", KOREAN, hit_limit=True).outcome
        == "parse_failed"
    )
    assert parse_merge_reply("json", "", KOREAN).outcome == "empty"


def test_srt_prompts_copy_show_and_list(home: Path) -> None:
    runner = CliRunner()
    copied = runner.invoke(cli, ["prompts", "copy", "srt", "mine"])
    assert copied.exit_code == 0, copied.output
    assert copied.output.strip().endswith("mine.toml")
    shown = runner.invoke(cli, ["prompts", "show", "mine"])
    assert shown.exit_code == 0 and "[merge]" in shown.output and "{input_block}" in shown.output
    listed = runner.invoke(cli, ["prompts", "list"])
    assert listed.exit_code == 0 and "mine" in listed.output
    missing = runner.invoke(cli, ["prompts", "show", "nope"])
    assert missing.exit_code != 0 and "no prompt set 'nope'" in missing.output
