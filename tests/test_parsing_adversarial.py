"""Replies that try to pass for a reflection without being one: each fails with its reason.

Built from what servers and small models really send back: the prompt's own tail echoed, the
format example with its placeholders, marker names and markers where the text should be, fields of
one word, markers in code blocks. And, against over-eager rules, good replies in several scripts.
"""

from __future__ import annotations

import pytest

from srt_local.pairs import Pair
from srt_local.parsing import count_words, parse_reply
from srt_local.prompts import build_prompt

PAIR = Pair("Give three tips for staying healthy.", "", "Eat well.")
INSTR = build_prompt("instruction", PAIR, "markers").messages[-1]["content"]
RESP = build_prompt("response", PAIR, "markers").messages[-1]["content"]
FORMAT_SENTENCE = (
    "Then put the new instruction between the markers [New Instruction] and [End], and its "
    "answer between [New Answer] and [End], exactly like this:"
)
GOOD_INSTRUCTION = "Design a one-week plan for staying healthy, with meals, sleep and exercise."
GOOD_ANSWER = "Monday: a 30-minute walk, vegetables at every meal, and eight hours of sleep."


def instruction(reply: str, hit_limit: bool = False):  # type: ignore[no-untyped-def]
    return parse_reply("instruction", "markers", reply, PAIR, hit_limit=hit_limit)


def response(reply: str):  # type: ignore[no-untyped-def]
    return parse_reply("response", "markers", reply, PAIR)


ADVERSARIAL_INSTRUCTION = {
    # The bug of the issue: only the tail of the prompt, echoed by the server.
    "the prompt's tail": INSTR[-400:],
    "the format sentence alone": FORMAT_SENTENCE,
    "the format sentence in the middle of prose": f"Sure. {FORMAT_SENTENCE} Done!",
    "the whole format section": INSTR[INSTR.index("### Format") :],
    "the whole prompt": INSTR,
    "the format example": "[New Instruction]\n<the new instruction>\n[End]\n\n"
    "[New Answer]\n<the answer to the new instruction>\n[End]",
    "a placeholder inside the text": f"[New Instruction]\n{GOOD_INSTRUCTION} <the new "
    f"instruction>\n[End]\n[New Answer]\n{GOOD_ANSWER}\n[End]",
    "marker names as the text": "[New Instruction]\nNew Instruction\n[End]\n"
    "[New Answer]\nNew Answer\n[End]",
    "a closing tag in the text": f"[New Instruction]\n{GOOD_INSTRUCTION}\n[/New Instruction]\n"
    f"[New Answer]\n{GOOD_ANSWER}\n[/New Answer]",
    "one-word fields": "[New Instruction] Explain. [End] [New Answer] Yes [End]",
    "connector words": "[New Instruction] and [End] [New Answer] and [End]",
    "empty fields": "[New Instruction]\n\n[End]\n[New Answer]\n\n[End]",
    "N/A fields": "[New Instruction] N/A [End] [New Answer] N/A [End]",
    "nested openings, nothing inside": f"[New Instruction]\n[New Answer]\n{GOOD_ANSWER}\n[End]",
    "an answer and no instruction": f"[New Answer]\n{GOOD_ANSWER}\n[End]",
    "unclosed and cut at the token limit": f"[New Instruction]\n{GOOD_INSTRUCTION}\n[End]\n"
    "[New Answer]\nMonday: a 30-minute walk, vegetables at",
    "markers only inside a code block of the analysis": "The analysis.\n```\nthe instruction "
    "[New Instruction] is weak\n```\nNo rewrite.",
    "the task text handed back as the instruction": "[New Instruction]\nFrom that analysis, "
    "write one new instruction: complete, more demanding, and not something that can be "
    f"answered in a line.\n[End]\n[New Answer]\n{GOOD_ANSWER}\n[End]",
    "the original instruction handed back": f"[New Instruction]\n{PAIR.instruction}\n[End]\n"
    f"[New Answer]\n{GOOD_ANSWER}\n[End]",
    "the prompt's pair echoed with markers around it": "[New Instruction]\n### Instruction\n"
    f"{PAIR.instruction}\n[End]\n[New Answer]\n### Answer\n{PAIR.output}\n[End]",
}

ADVERSARIAL_RESPONSE = {
    "the prompt's tail": RESP[-300:],
    "the format example": "[Better Answer]\n<the better answer>\n[End]",
    "a one-word better answer": "[Better Answer] and [End]",
    "the original answer back": f"[Better Answer]\n{PAIR.output}\n[End]",
    "the format sentence": "put the better answer between the markers [Better Answer] and [End], "
    "exactly like this:",
}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL_INSTRUCTION))
def test_no_adversarial_instruction_reply_passes(name: str) -> None:
    hit_limit = "token limit" in name
    parsed = instruction(ADVERSARIAL_INSTRUCTION[name], hit_limit=hit_limit)
    assert parsed.outcome != "ok", (name, parsed.reflection)
    assert parsed.reflection is None
    assert parsed.detail  # always with its reason


@pytest.mark.parametrize("name", sorted(ADVERSARIAL_RESPONSE))
def test_no_adversarial_response_reply_passes(name: str) -> None:
    parsed = response(ADVERSARIAL_RESPONSE[name])
    assert parsed.outcome != "ok" and parsed.reflection is None and parsed.detail, name


def test_the_echoed_tail_of_the_issue_is_an_echo_with_its_reason() -> None:
    parsed = instruction(
        "... put the new instruction between the markers [New Instruction] and [End], and its "
        "answer between [New Answer] and [End] ..."
    )
    assert parsed.outcome == "echo"
    assert parsed.detail == "the reply repeats the prompt's instructions"


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("[New Instruction] Explain. [End] [New Answer] Yes [End]", "too short"),
        (
            f"[New Instruction]\n{GOOD_INSTRUCTION}\n[/New Instruction]\n[New Answer]\n"
            f"{GOOD_ANSWER}\n[End]",
            "marker's name",
        ),
        (
            "[New Instruction]\n<the new instruction>\n[End]\n[New Answer]\nok then\n[End]",
            "placeholder",
        ),
    ],
)
def test_reasons_name_the_problem(reply: str, reason: str) -> None:
    parsed = instruction(reply)
    assert parsed.outcome != "ok" and reason in (parsed.detail or "")


def test_a_quoted_format_sentence_before_real_blocks_does_not_spoil_them() -> None:
    reply = (
        f"As asked: {FORMAT_SENTENCE}\n\n[New Instruction]\n{GOOD_INSTRUCTION}\n[End]\n\n"
        f"[New Answer]\n{GOOD_ANSWER}\n[End]"
    )
    parsed = instruction(reply)
    assert parsed.outcome == "ok" and parsed.reflection is not None
    assert parsed.reflection.instruction == GOOD_INSTRUCTION


def test_markers_inside_a_code_block_of_the_answer_are_its_text() -> None:
    code = "```python\nprint('[End]')\nprint('[New Answer]')\n```"
    reply = (
        f"[New Instruction]\nWrite a Python snippet that prints two marker strings.\n[End]\n"
        f"[New Answer]\nHere it is:\n{code}\nIt prints both lines.\n[End]"
    )
    parsed = instruction(reply)
    assert parsed.outcome == "ok" and parsed.reflection is not None
    assert parsed.reflection.output == f"Here it is:\n{code}\nIt prints both lines."


def test_a_code_block_wrapping_the_whole_reply_is_dress() -> None:
    reply = f"```\n[New Instruction]\n{GOOD_INSTRUCTION}\n[End]\n[New Answer]\n{GOOD_ANSWER}\n[End]\n```"
    parsed = instruction(reply)
    assert parsed.outcome == "ok" and parsed.reflection is not None
    assert parsed.reflection.output == GOOD_ANSWER
    fenced_fields = f"[Better Answer]\n```\n{GOOD_ANSWER}\n```\n[End]"
    better = response(fenced_fields)
    assert better.outcome == "ok" and better.reflection is not None
    assert better.reflection.output == f"```\n{GOOD_ANSWER}\n```"  # a whole code block is content


@pytest.mark.parametrize(
    ("new_instruction", "new_answer"),
    [
        ("写一首关于秋天的诗", "秋风吹落叶，金黄满山川。"),
        ("秋の俳句を一句詠んでください", "古池や蛙飛び込む水の音"),
        ("가을에 대한 짧은 시를 써 주세요", "낙엽이 지고 바람이 분다"),
        ("Напишите короткое стихотворение об осени", "Листья падают, ветер поёт."),
        ("اكتب قصيدة قصيرة عن الخريف", "تتساقط الأوراق ويغني الريح"),
        ("เขียนกลอนสั้นเกี่ยวกับฤดูใบไม้ร่วง", "ใบไม้ร่วงหล่นตามสายลม"),
        ("Écris un court poème sur l'automne", "Les feuilles tombent doucement."),
    ],
)
def test_good_replies_in_any_script_still_parse(new_instruction: str, new_answer: str) -> None:
    reply = (
        f"La instrucción es demasiado simple.\n\n[New Instruction]\n{new_instruction}\n[End]\n\n"
        f"[New Answer]\n{new_answer}\n[End]"
    )
    parsed = instruction(reply)
    assert parsed.outcome == "ok", parsed.detail
    assert parsed.reflection is not None
    assert (parsed.reflection.instruction, parsed.reflection.output) == (
        new_instruction,
        new_answer,
    )
    for mode_reply in (f'{{"critique": "", "better_answer": "{new_answer}"}}',):
        assert parse_reply("response", "json", mode_reply, PAIR).outcome == "ok"


def test_words_are_counted_in_scripts_without_spaces() -> None:
    assert count_words("写一首诗") == 4
    assert count_words("Write a poem.") == 3
    assert count_words("秋の俳句 please") == 5


@pytest.mark.parametrize(
    "reply",
    [
        '{"critique": "x", "new_instruction": "and", "new_answer": "and"}',
        '{"critique": "x", "new_instruction": "<the new instruction>", "new_answer": "a b c"}',
        '{"critique": "", "new_instruction": "Write the new instruction between the markers '
        '[New Instruction] and [End], and its answer", "new_answer": "fine answer here"}',
    ],
)
def test_json_fields_are_held_to_the_same_rules(reply: str) -> None:
    parsed = parse_reply("instruction", "json", reply, PAIR)
    assert parsed.outcome != "ok" and parsed.detail
