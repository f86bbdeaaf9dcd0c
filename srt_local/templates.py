"""The texts a student scores: conditioning templates T, the reverse request R, and the targets.

The vicuna, alpaca and wizardlm strings and the reverse request reproduce the reference
implementation (tianyi-lab/Reflection_Tuning, selection_code/data_analysis.py) character for
character, so that scores stay comparable with the statistics its authors published.

For a pair (x, y):
- IFD scores y after `forward_prompt` (T(x)); the response is appended directly, as the reference
  does (`whole_text = prompt + output`).
- r-IFD scores x after `reverse_prompt` (T(R(y))).
- `none` is Superfiltering's choice: no template, the prompt is the text plus a newline.
- `chat` renders the GGUF's own chat template with one user message and the generation prompt;
  its texts are tokenized with control tokens parsed (the template's own markers are text), so a
  pair that spells out such a marker gets it as a control token too.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from srt_local.config import TEMPLATES, ConfigError
from srt_local.pairs import Pair

REVERSE_HEAD = (
    "Below is the response to an instruction, please guess the corresponding instruction "
    "for the given response.\n"
)
REVERSE_TAIL = "\nGenerate the instruction for the above response."

_VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the user's questions."
)


@dataclass(frozen=True)
class FormatTemplate:
    """A reference-style template: one format string with an input field, one without."""

    prompt_input: str
    prompt_no_input: str


FORMAT_TEMPLATES: dict[str, FormatTemplate] = {
    "vicuna": FormatTemplate(
        prompt_input=_VICUNA_SYSTEM + " USER: {instruction}\nInput:\n{input} ASSISTANT:",
        prompt_no_input=_VICUNA_SYSTEM + " USER: {instruction} ASSISTANT:",
    ),
    "alpaca": FormatTemplate(
        prompt_input=(
            "Below is an instruction that describes a task, paired with an input that provides "
            "further context. Write a response that appropriately completes the request.\n\n"
            "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
        ),
        prompt_no_input=(
            "Below is an instruction that describes a task. "
            "Write a response that appropriately completes the request.\n\n"
            "### Instruction:\n{instruction}\n\n### Response:"
        ),
    ),
    "wizardlm": FormatTemplate(
        prompt_input="{instruction}\n{input}\n\n### Response:",
        prompt_no_input="{instruction}\n\n### Response:",
    ),
}


def instruction_text(pair: Pair) -> str:
    """x as a target text: the instruction, plus a newline and the input when there is one.

    The reference glues instruction and input with no separator (`instruct_i_ori + input_i`),
    which fuses the last word of one with the first word of the other; a newline keeps both
    intact, as every template does when it shows them.
    """
    return pair.instruction + "\n" + pair.input if pair.input else pair.instruction


def reverse_request(response: str) -> str:
    """R(y): the request to guess the instruction behind a response (the reference's words)."""
    return REVERSE_HEAD + response + REVERSE_TAIL


@dataclass(frozen=True)
class Conditioning:
    """One template, ready to render prompts. `chat_template` is set only for `chat`."""

    name: str
    chat_template: str | None = None
    eos_text: str = ""

    @property
    def special_tokens_in_text(self) -> bool:
        """Whether rendered prompts carry control tokens as text (a chat template does)."""
        return self.name == "chat"

    def forward_prompt(self, pair: Pair) -> str:
        """T(x): the prompt the response is scored after."""
        if self.name == "none":
            return instruction_text(pair) + "\n"
        if self.name == "chat":
            return self._chat(instruction_text(pair))
        fmt = FORMAT_TEMPLATES[self.name]
        if pair.input:
            return fmt.prompt_input.format_map(
                {"instruction": pair.instruction, "input": pair.input}
            )
        return fmt.prompt_no_input.format_map({"instruction": pair.instruction})

    def reverse_prompt(self, response: str) -> str:
        """T(R(y)): the prompt the instruction is scored after."""
        request = reverse_request(response)
        if self.name == "none":
            return request + "\n"
        if self.name == "chat":
            return self._chat(request)
        return FORMAT_TEMPLATES[self.name].prompt_no_input.format_map({"instruction": request})

    def _chat(self, content: str) -> str:
        assert self.chat_template is not None
        formatter = _chat_formatter(self.chat_template, self.eos_text)
        return str(formatter(messages=[{"role": "user", "content": content}]).prompt)


@lru_cache(maxsize=8)
def _chat_formatter(template: str, eos_text: str) -> Any:
    """A compiled chat template (compiling one takes longer than rendering it many times)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    # The scorer puts the BOS token id first itself; an empty bos_token keeps a template that
    # prints it from adding a second one as text.
    return Jinja2ChatFormatter(template=template, eos_token=eos_text, bos_token="")


def make_conditioning(
    name: str, student: str, chat_template: str | None = None, eos_text: str = ""
) -> Conditioning:
    """The template `name` for `student`; `chat` needs the GGUF's chat template."""
    if name not in TEMPLATES:
        raise ConfigError(
            f"student {student!r}: unknown template {name!r} (one of {', '.join(TEMPLATES)})"
        )
    if name == "chat":
        if not chat_template:
            raise ConfigError(
                f"student {student!r}: template 'chat' needs a chat template in the GGUF "
                "(tokenizer.chat_template), and this one has none; pick vicuna, alpaca, "
                "wizardlm or none"
            )
        return Conditioning(name, chat_template, eos_text)
    return Conditioning(name)
