"""The reply parser on replies shaped like real teachers' output."""

from __future__ import annotations

import json

import pytest

from srt_local.pairs import Pair
from srt_local.parsing import parse_reply

PAIR = Pair("Name three primary colors.", "", "Red, blue and yellow.")
PAIR_WITH_INPUT = Pair("Summarize the text.", "The cat sat on the mat all day.", "A cat sat.")

NEW_INSTRUCTION = (
    "Explain how the primary colors of light differ from the primary colors of pigment, "
    "and why printers use cyan, magenta and yellow."
)
NEW_ANSWER = (
    "Light mixes additively: red, green and blue light add up to white. Pigments mix "
    "subtractively: each absorbs part of the spectrum, so printers use cyan, magenta and yellow."
)
BETTER = (
    "The three traditional primary colors are red, yellow and blue; in light they are red, "
    "green and blue."
)


def instr(reply: str, **kw: bool):  # type: ignore[no-untyped-def]
    return parse_reply("instruction", "markers", reply, PAIR, **kw)


def resp(reply: str, pair: Pair = PAIR, **kw: bool):  # type: ignore[no-untyped-def]
    return parse_reply("response", "markers", reply, pair, **kw)


# ---------------------------------------------------------------- markers: accepted dress


@pytest.mark.parametrize(
    "reply",
    [
        # as asked
        f"The instruction is too simple.\n\n[New Instruction]\n{NEW_INSTRUCTION}\n[End]\n\n"
        f"[New Answer]\n{NEW_ANSWER}\n[End]",
        # markdown bold around the markers (llama3-style)
        f"**Analysis**: too simple.\n\n**[New Instruction]**\n{NEW_INSTRUCTION}\n**[End]**\n\n"
        f"**[New Answer]**\n{NEW_ANSWER}\n**[End]**",
        # headings, upper case End, inner spaces
        f"## Analysis\ntoo simple\n\n### [New Instruction]\n{NEW_INSTRUCTION}\n[END]\n\n"
        f"### [ new answer ]\n{NEW_ANSWER}\n[ End ]",
        # a colon after the marker, everything on one line
        f"Too simple. [New Instruction]: {NEW_INSTRUCTION} [End] [New Answer]: {NEW_ANSWER} [End]",
        # bold with the colon inside
        f"Too simple.\n**[New Instruction]:** {NEW_INSTRUCTION}\n**[End]**\n"
        f"**[New Answer]:** {NEW_ANSWER}\n**[End]**",
        # preamble and trailing chat
        f"Sure! Here is my review.\n\nThe instruction is too simple.\n\n[New Instruction]\n"
        f"{NEW_INSTRUCTION}\n[End]\n\n[New Answer]\n{NEW_ANSWER}\n[End]\n\n"
        "I hope this helps! Let me know if you want another version.",
        # the final [End] missing at the very end of the reply
        f"Too simple.\n[New Instruction]\n{NEW_INSTRUCTION}\n[End]\n[New Answer]\n{NEW_ANSWER}\n",
        # no [End] after the instruction: the next marker closes it
        f"Too simple.\n[New Instruction]\n{NEW_INSTRUCTION}\n\n[New Answer]\n{NEW_ANSWER}\n[End]",
        # a rule line between the blocks
        f"Too simple.\n[New Instruction]\n{NEW_INSTRUCTION}\n---\n"
        f"[New Answer]\n{NEW_ANSWER}\n---\n[End]",
        # full-width brackets, as some multilingual models write them
        f"太简单了。\n【New Instruction】\n{NEW_INSTRUCTION}\n【End】\n"
        f"【New Answer】\n{NEW_ANSWER}\n【End】",
    ],
)
def test_instruction_markers_in_their_dress(reply: str) -> None:
    parsed = instr(reply)
    assert parsed.outcome == "ok", parsed.detail
    assert parsed.reflection is not None
    assert parsed.reflection.instruction == NEW_INSTRUCTION
    assert parsed.reflection.output == NEW_ANSWER
    assert parsed.reflection.input == ""


def test_critique_is_the_text_before_the_first_marker() -> None:
    parsed = instr(
        f"It asks for a list only.\n\n[New Instruction]\n{NEW_INSTRUCTION}\n[End]\n"
        f"[New Answer]\n{NEW_ANSWER}\n[End]"
    )
    assert parsed.reflection is not None
    assert parsed.reflection.critique == "It asks for a list only."
    no_critique = instr(f"[New Instruction]\n{NEW_INSTRUCTION}\n[End]\n[New Answer]\n{NEW_ANSWER}")
    assert no_critique.reflection is not None and no_critique.reflection.critique is None


def test_the_word_end_inside_text_never_cuts() -> None:
    answer = (
        "The Endangered Species Act protects habitats. In the end, every weekend counts.\n"
        "End\n"
        "That last line was a bare End, not a marker; ENDING here."
    )
    parsed = resp(f"Too short.\n[Better Answer]\n{answer}\n[End]")
    assert parsed.outcome == "ok"
    assert parsed.reflection is not None and parsed.reflection.output == answer


def test_markdown_inside_an_answer_is_kept() -> None:
    answer = "**Primary colors**\n\n* red\n* yellow\n* blue\n\n```\nRYB\n```"
    parsed = resp(f"[Better Answer]\n{answer}\n[End]")
    assert parsed.reflection is not None and parsed.reflection.output == answer


def test_response_stage_keeps_the_pairs_input() -> None:
    parsed = resp(
        "Misses the point.\n[Better Answer]\nA cat spent the whole day on the mat.\n[End]",
        PAIR_WITH_INPUT,
    )
    assert parsed.outcome == "ok"
    assert parsed.reflection is not None
    assert parsed.reflection.instruction is None
    assert parsed.reflection.input == PAIR_WITH_INPUT.input


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        # the teacher restates the format (with our placeholder) before the real block
        (
            "I will write it as [Better Answer] <the better answer> [End].\n\n"
            f"[Better Answer]\n{BETTER}\n[End]",
            BETTER,
        ),
        # two proper blocks: the first closed one wins
        (
            f"[Better Answer]\n{BETTER}\n[End]\n\n"
            "Or, shorter:\n[Better Answer]\nRed, yellow, blue.\n[End]",
            BETTER,
        ),
        # a mention of the marker in the analysis, then the real block
        (
            f"The [Better Answer] should name both systems.\n\n[Better Answer]\n{BETTER}\n[End]",
            BETTER,
        ),
    ],
)
def test_two_blocks(reply: str, expected: str) -> None:
    parsed = resp(reply)
    assert parsed.outcome == "ok", parsed.detail
    assert parsed.reflection is not None and parsed.reflection.output == expected


def test_other_languages() -> None:
    zh = "三原色是红、黄、蓝。在光学中，三原色是红、绿、蓝。"
    parsed = resp(f"这个回答太简短了。\n\n[Better Answer]\n{zh}\n[End]")
    assert parsed.reflection is not None and parsed.reflection.output == zh
    assert parsed.reflection.critique == "这个回答太简短了。"
    fr = "Les trois couleurs primaires sont le rouge, le jaune et le bleu. Fin de la liste."
    parsed = resp(f"**[Better Answer]**\n{fr}\n**[End]**")
    assert parsed.reflection is not None and parsed.reflection.output == fr


# ---------------------------------------------------------------- markers: rejected


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        ("", "empty"),
        ("   \n ", "empty"),
        ("[Better Answer]\n\n[End]", "empty"),
        ("[Better Answer] N/A [End]", "empty"),
        ("[Better Answer]\n**n/a**\n[End]", "empty"),
        ("[Better Answer]\n<the better answer>\n[End]", "echo"),
        ("[Better Answer] your answer [End]", "echo"),
        (f"Fine as is.\n[Better Answer]\n{PAIR.output}\n[End]", "echo"),
        ("[Better Answer]\n  red, BLUE and yellow  \n[End]", "echo"),
        ("I'm sorry, but I can't help with that request.", "refused"),
        ("I’m sorry, but I cannot assist with that.", "refused"),
        ("Lo siento, no puedo ayudar con eso.", "refused"),
        ("[Better Answer]\nI cannot provide an answer to this question.\n[End]", "refused"),
        (
            "The answer is fine. Better Answer: Red, yellow and blue are primary. End",
            "parse_failed",
        ),
        (f"New Instruction: {NEW_INSTRUCTION}\nNew Answer: {NEW_ANSWER}", "parse_failed"),
        (
            f"[New Instruction]\n{NEW_INSTRUCTION}\n[End]\n[New Answer]\n{NEW_ANSWER}\n[End]",
            "parse_failed",
        ),
    ],
)
def test_response_rejections(reply: str, outcome: str) -> None:
    parsed = resp(reply)
    assert parsed.outcome == outcome, parsed.detail
    assert parsed.reflection is None
    assert parsed.detail


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        (f"[New Instruction]\n{NEW_INSTRUCTION}\n[End]", "parse_failed"),
        (f"[New Answer]\n{NEW_ANSWER}\n[End]", "parse_failed"),
        (
            f"[New Instruction]\n{PAIR.instruction}\n[End]\n[New Answer]\n{NEW_ANSWER}\n[End]",
            "echo",
        ),
        (
            f"[New Instruction]\n{NEW_INSTRUCTION}\n[End]\n[New Answer]\n{PAIR.output}\n[End]",
            "echo",
        ),
        (
            "[New Instruction]\n<the new instruction>\n[End]\n[New Answer]\n"
            "<the answer to the new instruction>\n[End]",
            "echo",
        ),
        (f"[New Instruction]\nN/A\n[End]\n[New Answer]\n{NEW_ANSWER}\n[End]", "empty"),
        (f"[New Instruction]\n{NEW_INSTRUCTION}\n[End]\n[New Answer]\n[End]", "empty"),
        (f"[Better Answer]\n{BETTER}\n[End]", "parse_failed"),
    ],
)
def test_instruction_rejections(reply: str, outcome: str) -> None:
    parsed = instr(reply)
    assert parsed.outcome == outcome, parsed.detail
    assert parsed.reflection is None


def test_a_block_cut_at_the_token_limit_is_not_accepted() -> None:
    reply = f"[Better Answer]\n{BETTER} And furthermore the"
    assert resp(reply).outcome == "ok"
    cut = resp(reply, hit_limit=True)
    assert cut.outcome == "parse_failed"
    assert cut.detail is not None and "token limit" in cut.detail
    # A block closed by [End] is complete even when the reply ran on to the limit afterwards.
    assert resp(f"[Better Answer]\n{BETTER}\n[End]\nAlso", hit_limit=True).outcome == "ok"


def test_an_echo_ranks_above_a_plain_failure_when_no_block_is_usable() -> None:
    reply = "Format: [Better Answer] <the better answer> [End]\nThat is all."
    assert resp(reply).outcome == "echo"


# ---------------------------------------------------------------- json


def jinstr(reply: str, **kw: bool):  # type: ignore[no-untyped-def]
    return parse_reply("instruction", "json", reply, PAIR, **kw)


def jresp(reply: str, **kw: bool):  # type: ignore[no-untyped-def]
    return parse_reply("response", "json", reply, PAIR, **kw)


GOOD = {"critique": "Too simple.", "new_instruction": NEW_INSTRUCTION, "new_answer": NEW_ANSWER}


@pytest.mark.parametrize(
    "reply",
    [
        json.dumps(GOOD),
        json.dumps(GOOD, indent=2),
        f"```json\n{json.dumps(GOOD, indent=2)}\n```",
        f"Here is the JSON you asked for:\n```\n{json.dumps(GOOD)}\n```\nAnything else?",
        f"{json.dumps(GOOD)}\n\nI hope this helps.",
        f"{json.dumps(GOOD)}\n{json.dumps({**GOOD, 'new_instruction': 'second'})}",
        json.dumps(
            {
                "Critique": "Too simple.",
                "New Instruction": NEW_INSTRUCTION,
                "new-answer": NEW_ANSWER,
            }
        ),
        f"```json\n{json.dumps(GOOD)}",  # an unclosed fence
    ],
)
def test_json_accepted(reply: str) -> None:
    parsed = jinstr(reply)
    assert parsed.outcome == "ok", parsed.detail
    assert parsed.reflection is not None
    assert parsed.reflection.instruction == NEW_INSTRUCTION
    assert parsed.reflection.output == NEW_ANSWER
    assert parsed.reflection.critique == "Too simple."


def test_json_response_stage_and_optional_critique() -> None:
    parsed = jresp(json.dumps({"better_answer": BETTER}))
    assert parsed.outcome == "ok"
    assert parsed.reflection is not None
    assert parsed.reflection.output == BETTER and parsed.reflection.critique is None


@pytest.mark.parametrize(
    ("reply", "outcome", "detail"),
    [
        ('{"critique": "x", "new_instruction": "y"}', "parse_failed", "new_answer"),
        (
            '{"critique": "x", "new_instruction": "' + NEW_INSTRUCTION + '", "new_answer": null}',
            "empty",
            "null",
        ),
        (json.dumps({**GOOD, "new_answer": "N/A"}), "empty", "empty"),
        (json.dumps({**GOOD, "new_answer": ""}), "empty", "empty"),
        (json.dumps({**GOOD, "new_instruction": PAIR.instruction}), "echo", "original"),
        (json.dumps({**GOOD, "new_answer": ["a", "b"]}), "parse_failed", "not a string"),
        ('{"critique": "x", "new_instruction": "unfinished', "parse_failed", "not valid JSON"),
        ("[1, 2, 3]", "parse_failed", "no JSON object"),
        ('["a", {"x": 1}]', "parse_failed", "no key"),
        ("I'm sorry, I can't help with that.", "refused", "declined"),
        ("no json here", "parse_failed", "no JSON object"),
    ],
)
def test_json_rejections(reply: str, outcome: str, detail: str) -> None:
    parsed = jinstr(reply)
    assert parsed.outcome == outcome
    assert parsed.detail is not None and detail in parsed.detail


def test_json_cut_at_the_limit_says_so() -> None:
    parsed = jinstr('{"critique": "x", "new_instruction": "abc', hit_limit=True)
    assert parsed.outcome == "parse_failed"
    assert parsed.detail is not None and "token limit" in parsed.detail
