"""Make a teacher request fit the teacher's context, or say that it cannot: never an endless retry.

The pair's original response is what grows without bound (a long answer to a short question), so it
is what gets cut, as the reference does. Two rules, chosen by the run's profile (`TeacherSpec.trim`):

- `fit` (default): cut the response, from its end, until the prompt leaves `num_predict` tokens of
  `num_ctx` for the reply.
- `reference` (paper): the reference's cut: when instruction + input + response exceed 2048 tokens
  of the teacher's tokenizer, drop that many *characters* from the end of the response (its token
  count used as a character count); then shrink the reply budget to what the context leaves, as the
  reference's `min(max_tokens, 4050 - prompt tokens)` does.

A prompt that still leaves less than `MIN_REPLY_TOKENS` for the reply cannot be sent: that is a
final failure of the reflection (`too_long`), with the reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from srt_local.pairs import Pair
from srt_local.prompts import Prompt

REFERENCE_TEXT_TOKENS = 2048  # the reference's limit on instruction + input + response
MIN_REPLY_TOKENS = 64  # below this no reflection can be written
MAX_ROUNDS = 12

CountMessages = Callable[[list[dict[str, str]]], Awaitable[int]]
CountText = Callable[[str], Awaitable[int]]


@dataclass(frozen=True)
class Fitted:
    """The request to send: its prompt, reply budget, and what was cut to make it fit."""

    prompt: Prompt
    num_predict: int
    note: str | None = None


@dataclass(frozen=True)
class TooLong:
    """No cut makes the request fit; `reason` says why in a line."""

    reason: str


async def fit_request(
    build: Callable[[Pair], Prompt],
    pair: Pair,
    count_messages: CountMessages,
    count_text: CountText,
    num_ctx: int,
    num_predict: int,
    rule: str,
) -> Fitted | TooLong:
    """The prompt for `pair` cut (if need be) to fit `num_ctx` with room for a reply."""
    note = None
    if rule == "reference":
        whole = await count_text(pair.instruction + pair.input + pair.output)
        gap = whole - REFERENCE_TEXT_TOKENS
        if gap > 0:
            kept = max(0, len(pair.output) - gap)
            note = (
                f"reference trim: instruction+input+response had {whole} tokens (> "
                f"{REFERENCE_TEXT_TOKENS}); the response was cut from {len(pair.output)} to "
                f"{kept} characters"
            )
            pair = replace(pair, output=pair.output[:kept])
        prompt = build(pair)
        used = await count_messages(prompt.messages)
        budget = min(num_predict, num_ctx - used)
        if budget < MIN_REPLY_TOKENS:
            return TooLong(_too_long(used, num_ctx))
        if budget < num_predict:
            shrink = f"reply budget cut to {budget} tokens (prompt {used} of num_ctx={num_ctx})"
            note = f"{note}; {shrink}" if note else shrink
        return Fitted(prompt, budget, note)

    prompt = build(pair)
    used = await count_messages(prompt.messages)
    room = num_ctx - max(num_predict, MIN_REPLY_TOKENS)
    original = len(pair.output)
    rounds = 0
    while used > room:
        rounds += 1
        if not pair.output or rounds > MAX_ROUNDS:
            return TooLong(_too_long(used, num_ctx, num_predict))
        out_tokens = max(1, await count_text(pair.output))
        over = used - room
        # Cut in proportion to the response's own characters per token, a little more than needed.
        cut = max(1, int(len(pair.output) * min(1.0, (over + 8) / out_tokens)))
        pair = replace(pair, output=pair.output[: max(0, len(pair.output) - cut)])
        prompt = build(pair)
        used = await count_messages(prompt.messages)
    if rounds:
        note = (
            f"the response was cut from {original} to {len(pair.output)} characters so the "
            f"prompt ({used} tokens) leaves {num_predict} of num_ctx={num_ctx} for the reply"
        )
    return Fitted(prompt, min(num_predict, num_ctx - used), note)


def _too_long(used: int, num_ctx: int, num_predict: int | None = None) -> str:
    reply = f"{num_predict} reply tokens" if num_predict else f"{MIN_REPLY_TOKENS} reply tokens"
    return (
        f"the request does not fit the teacher's context even with the response cut: the prompt "
        f"has {used} tokens, num_ctx={num_ctx} must also hold {reply}; raise num_ctx, or shorten "
        "the instruction or input"
    )
