"""The scored texts: the reference's template strings, the reverse request and the targets."""

from __future__ import annotations

import pytest

from srt_local.config import ConfigError
from srt_local.pairs import Pair
from srt_local.templates import instruction_text, make_conditioning, reverse_request

PLAIN = Pair("Name a prime number.", "", "Seven.")
WITH_INPUT = Pair("Sum these numbers.", "2, 3", "Five.")

VICUNA_HEAD = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the user's questions. USER: "
)
REQUEST = (
    "Below is the response to an instruction, please guess the corresponding instruction for the "
    "given response.\nSeven.\nGenerate the instruction for the above response."
)


@pytest.mark.parametrize(
    ("template", "pair", "expected"),
    [
        ("vicuna", PLAIN, VICUNA_HEAD + "Name a prime number. ASSISTANT:"),
        ("vicuna", WITH_INPUT, VICUNA_HEAD + "Sum these numbers.\nInput:\n2, 3 ASSISTANT:"),
        (
            "alpaca",
            PLAIN,
            "Below is an instruction that describes a task. Write a response that appropriately "
            "completes the request.\n\n### Instruction:\nName a prime number.\n\n### Response:",
        ),
        (
            "alpaca",
            WITH_INPUT,
            "Below is an instruction that describes a task, paired with an input that provides "
            "further context. Write a response that appropriately completes the request.\n\n"
            "### Instruction:\nSum these numbers.\n\n### Input:\n2, 3\n\n### Response:",
        ),
        ("wizardlm", PLAIN, "Name a prime number.\n\n### Response:"),
        ("wizardlm", WITH_INPUT, "Sum these numbers.\n2, 3\n\n### Response:"),
        ("none", PLAIN, "Name a prime number.\n"),
        ("none", WITH_INPUT, "Sum these numbers.\n2, 3\n"),
    ],
)
def test_forward_prompt_is_the_reference_string(template: str, pair: Pair, expected: str) -> None:
    assert make_conditioning(template, "s").forward_prompt(pair) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("vicuna", VICUNA_HEAD + REQUEST + " ASSISTANT:"),
        (
            "alpaca",
            "Below is an instruction that describes a task. Write a response that appropriately "
            "completes the request.\n\n### Instruction:\n" + REQUEST + "\n\n### Response:",
        ),
        ("wizardlm", REQUEST + "\n\n### Response:"),
        ("none", REQUEST + "\n"),
    ],
)
def test_reverse_prompt_wraps_the_request_in_the_template(template: str, expected: str) -> None:
    assert make_conditioning(template, "s").reverse_prompt("Seven.") == expected


def test_reverse_request_and_instruction_text() -> None:
    assert reverse_request("Seven.") == REQUEST
    assert instruction_text(PLAIN) == "Name a prime number."
    assert instruction_text(WITH_INPUT) == "Sum these numbers.\n2, 3"


def test_braces_in_texts_are_not_format_fields() -> None:
    pair = Pair("Fill {input} and {x}", "{instruction}", "{}")
    prompt = make_conditioning("alpaca", "s").forward_prompt(pair)
    assert "### Instruction:\nFill {input} and {x}\n\n### Input:\n{instruction}\n\n" in prompt


def test_chat_renders_one_user_message_and_the_generation_prompt() -> None:
    template = (
        "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}"
        "{{ eos_token }}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    chat = make_conditioning("chat", "s", chat_template=template, eos_text="</s>")
    assert chat.special_tokens_in_text
    # The scorer puts the BOS id first itself: the template's bos_token renders empty.
    assert chat.forward_prompt(WITH_INPUT) == "<|user|>Sum these numbers.\n2, 3</s><|assistant|>"
    assert chat.reverse_prompt("Seven.") == "<|user|>" + REQUEST + "</s><|assistant|>"


def test_chat_without_a_template_names_student_and_template() -> None:
    with pytest.raises(ConfigError, match=r"student 'gemma3-270m'.*template 'chat'"):
        make_conditioning("chat", "gemma3-270m", chat_template=None)


def test_unknown_template_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown template 'llama2'"):
        make_conditioning("llama2", "s")
