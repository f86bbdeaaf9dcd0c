"""Over-long teacher requests: cut to fit and recorded, or a final `too_long` with its reason."""

from __future__ import annotations

import asyncio
from typing import Any

from srt_local.config import TeacherOptions, TeacherSpec
from srt_local.pairs import Pair
from srt_local.prompts import Prompt, build_prompt
from srt_local.teacher_fit import REFERENCE_TEXT_TOKENS, Fitted, TooLong, fit_request
from srt_local.teachers.chat import ChatTeacher, Generation

REPLY = "Analysis.\n[Better Answer]\nA much better answer.\n[End]"


async def count_messages(messages: list[dict[str, str]]) -> int:
    return sum(len(m["content"]) for m in messages)  # one token per character


async def count_text(text: str) -> int:
    return len(text)


def fit(pair: Pair, num_ctx: int, num_predict: int, rule: str) -> Fitted | TooLong:
    return asyncio.run(
        fit_request(
            lambda p: build_prompt("response", p, "markers"),
            pair,
            count_messages,
            count_text,
            num_ctx,
            num_predict,
            rule,
        )
    )


def test_a_request_that_fits_is_sent_as_it_is() -> None:
    fitted = fit(Pair("Q?", "", "short"), 10_000, 500, "fit")
    assert isinstance(fitted, Fitted) and fitted.note is None and fitted.num_predict == 500


def test_a_long_response_is_cut_to_leave_room_for_the_reply() -> None:
    pair = Pair("Q?", "", "y" * 5000)
    fitted = fit(pair, 3000, 500, "fit")
    assert isinstance(fitted, Fitted)
    assert asyncio.run(count_messages(fitted.prompt.messages)) + 500 <= 3000
    assert "y" * 100 in fitted.prompt.messages[1]["content"]  # cut, not dropped
    assert fitted.note and "cut from 5000 to" in fitted.note


def test_an_instruction_too_long_for_any_cut_is_too_long() -> None:
    result = fit(Pair("Q" * 4000, "", "y" * 100), 3000, 500, "fit")
    assert isinstance(result, TooLong) and "num_ctx=3000" in result.reason


def test_the_reference_rule_cuts_characters_by_the_token_gap_and_shrinks_the_budget() -> None:
    pair = Pair("Q?", "", "y" * 3000)
    fitted = fit(pair, 6000, 4000, "reference")
    assert isinstance(fitted, Fitted)
    gap = len(pair.instruction + pair.output) - REFERENCE_TEXT_TOKENS
    assert "y" * (3000 - gap) + "\n" in fitted.prompt.messages[1]["content"]
    assert "y" * (3001 - gap) not in fitted.prompt.messages[1]["content"]
    used = asyncio.run(count_messages(fitted.prompt.messages))
    assert fitted.num_predict == 6000 - used < 4000
    assert fitted.note and "reference trim" in fitted.note and "reply budget" in fitted.note
    assert isinstance(fit(Pair("Q" * 5990, "", "y"), 6000, 4000, "reference"), TooLong)


class ScriptedTeacher(ChatTeacher):
    """A ChatTeacher whose server is a list of Generations."""

    backend = "ollama"

    def __init__(self, spec: TeacherSpec, replies: list[Generation]) -> None:
        super().__init__(spec, "m", None, None, concurrency=1)
        self.replies = replies
        self.sent: list[tuple[Prompt, dict[str, Any]]] = []

    async def _send(self, prompt: Prompt, options: dict[str, Any]) -> Generation:
        self.sent.append((prompt, options))
        return self.replies.pop(0)

    async def aclose(self) -> None:
        return None


def spec(num_ctx: int, **kw: Any) -> TeacherSpec:
    return TeacherSpec(
        name="t",
        backend="ollama",
        model="m",
        options=TeacherOptions(num_ctx=num_ctx, num_predict=256),
        **kw,
    )


def test_the_teacher_records_the_cut_and_fails_an_impossible_request_at_once() -> None:
    teacher = ScriptedTeacher(spec(1024), [Generation(text=REPLY)])
    result = asyncio.run(teacher.reflect("response", Pair("Q?", "", "long answer " * 600)))
    assert result.outcome == "ok"
    call = result.calls[0]
    assert call.prompt_truncated is True and "cut from" in call.options["srt_trimmed"]
    assert "srt_trimmed" not in teacher.sent[0][1]  # the note is recorded, never sent

    teacher = ScriptedTeacher(spec(1024), [])
    result = asyncio.run(teacher.reflect("response", Pair("Q? " * 2000, "", "A.")))
    assert result.outcome == "too_long" and teacher.sent == []
    assert result.calls[0].error_message and "does not fit" in result.calls[0].error_message


def test_a_context_error_from_the_backend_is_final() -> None:
    refused = Generation(error_kind="prompt_too_long", error_message="exceeds context window")
    teacher = ScriptedTeacher(spec(8192), [refused])
    result = asyncio.run(teacher.reflect("response", Pair("Q?", "", "A.")))
    assert result.outcome == "too_long" and len(result.calls) == 1


def test_paper_reasks_once_with_the_same_greedy_options() -> None:
    bad = Generation(text="no markers at all")
    teacher = ScriptedTeacher(spec(8192, max_attempts=2, reask="greedy"), [bad, bad])
    result = asyncio.run(teacher.reflect("response", Pair("Q?", "", "A.")))
    assert result.outcome == "parse_failed" and len(teacher.sent) == 2
    first, second = (options for _, options in teacher.sent)
    assert first == second and first["temperature"] == 0.0

    warmer = ScriptedTeacher(spec(8192, max_attempts=2), [bad, bad])
    asyncio.run(warmer.reflect("response", Pair("Q?", "", "A.")))
    assert warmer.sent[1][1]["temperature"] >= 0.7
