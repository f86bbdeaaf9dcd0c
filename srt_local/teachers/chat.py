"""The reflect loop every chat teacher shares: prompt, send, parse, retry, record every attempt.

A backend implements `_send`: one request, returning a Generation (a reply, or an error kind and
whether it is worth retrying). This module owns the two retry budgets:
- a reply that does not parse is asked again, up to `max_attempts` replies, with a new seed and
  (when the configured temperature is 0) a warmer temperature, since greedy decoding would repeat
  the same text whatever the seed (the `paper` profile re-asks once with the same options, as the
  reference does);
- a request that failed in transit (timeout, 5xx, queue full, stream cut) is sent again after an
  exponential back-off with jitter, up to `RetryPolicy.transport_retries` times per reflection;
- a request lost with its host in a teacher pool (`Generation.rerouted`) is sent again at once to
  another host, up to `MAX_REROUTES` times, without spending the transport budget: the host failed,
  not the request.
Three kinds of failure end differently:
- a prompt too long for the model, or a request the server rejects (HTTP 400), fails that sample
  alone, for good (outcome too_long or rejected): the same request would fail the same way;
- a reply longer than `reply_chars` ([limits] in models.toml) is cut off while it streams and
  fails that sample alone, for good (outcome reply_too_long), its first `reply_chars` characters
  kept as the raw reply: a model that rambles for megabytes must not stall the run or be exported;
- `RetryPolicy.pause_after` failed requests in a row of the same kind (a lasting 500 from a runner
  out of memory, a server gone, a 502), across samples, raise TeacherServerDown: the run pauses
  with the cause and what to do, instead of retrying every sample in turn.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from srt_local.config import Limits, TeacherSpec
from srt_local.merge import parse_merge_reply
from srt_local.pairs import Pair
from srt_local.parsing import Parsed, parse_reply
from srt_local.prompts import (
    Prompt,
    PromptSet,
    build_prompt,
    estimate_tokens,
    load_prompt_set,
)
from srt_local.run.vocabulary import Outcome
from srt_local.teacher_fit import TooLong, fit_request
from srt_local.teachers.base import ReflectResult, TeacherCall, TeacherError, TeacherServerDown

# A retry after an unparsable reply at temperature 0 needs some randomness to differ.
RETRY_TEMPERATURE = 0.7
# Failures that are the sample's own, whatever the server: the outcome they end it with.
FINAL_KINDS = {
    "prompt_too_long": "too_long",
    "prompt_truncated": "too_long",
    "context_full": "too_long",
    "rejected": "rejected",
    "reply_too_long": "reply_too_long",
}
# Failures that say nothing about the server's health: a full queue is load, not breakage.
NOT_LASTING = {"busy", "prompt_too_long", "prompt_truncated", "context_full", "reply_too_long"}
# Requests of one reflection lost with their hosts before the reflection gives up (a pool whose
# hosts keep dying under it should stop rather than loop).
MAX_REROUTES = 8


@dataclass(frozen=True)
class RetryPolicy:
    """How failed requests are retried: `transport_retries` re-sends per reflection, waiting
    base * 2**(n-1) seconds (at most `max_delay`), scaled by a random factor in [0.5, 1]."""

    transport_retries: int = 4
    base_delay: float = 0.5
    max_delay: float = 20.0
    pause_after: int = 3  # failed requests in a row, of one kind, that stop the teacher

    def delay(self, retry: int) -> float:
        return min(self.max_delay, self.base_delay * 2 ** (retry - 1)) * random.uniform(0.5, 1.0)


@dataclass
class Generation:
    """The result of one request: a reply with its counts, or an error."""

    text: str | None = None
    hit_limit: bool = False  # generation stopped at num_predict
    prompt_tokens: int | None = None
    prompt_eval_count: int | None = None
    prompt_truncated: bool | None = None
    eval_count: int | None = None
    total_duration_ms: float | None = None
    load_duration_ms: float | None = None
    prompt_eval_duration_ms: float | None = None
    eval_duration_ms: float | None = None
    error_kind: str | None = None
    error_message: str | None = None
    retryable: bool = False
    fatal: str | None = None  # a message for TeacherError after the retries are spent
    started_at: datetime | None = None  # when the request left the queue (None: when asked)
    finished_at: datetime | None = None  # when the reply ended, where the backend knows (else: now)
    thinking: str | None = None
    thinking_tokens: int | None = None
    options: dict[str, Any] | None = None  # the options sent, when the backend changed them
    status: int | None = None  # the HTTP status of a failed request
    host: str | None = None  # the server that answered (None: the teacher's own host)
    rerouted: bool = False  # lost with its host; the pool sends it again elsewhere


class ChatTeacher(ABC):
    """A teacher that sends chat messages to one model; subclasses implement `_send`."""

    backend: str = ""
    # Options a backend sets when models.toml leaves them out (part of what shapes the replies).
    default_options: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        spec: TeacherSpec,
        model: str,
        model_digest: str | None,
        host: str | None,
        concurrency: int,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.model = model
        self.model_digest = model_digest
        self.host = host
        self.output_mode = spec.output
        self.max_attempts = spec.max_attempts
        self.concurrency = max(1, concurrency)
        self.retry = retry or RetryPolicy()
        # The longest reply kept ([limits] reply_chars; open_teacher sets the configured one).
        self.reply_chars = Limits().reply_chars
        self.base_options = {**self.default_options, **spec.options.as_dict()}
        self.schema_chars = self.json_budget(self.base_options)
        self.prompt_set = load_prompt_set(spec.prompts)
        self.key = teacher_key(
            self.backend,
            model,
            model_digest,
            spec,
            self.base_options,
            self.key_extra(),
            self.prompt_set,
        )
        self._streak: tuple[Any, ...] | None = None
        self._streak_length = 0
        # Bumped when the server is found down: reflections begun before then send nothing more
        # (a new one, once the user has fixed the server, goes ahead).
        self._down_epoch = 0
        self._down = ""

    @abstractmethod
    async def _send(self, prompt: Prompt, options: dict[str, Any]) -> Generation:
        """Send one request; never raise for a failed request, report it in the Generation."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release the client or model."""

    def key_extra(self) -> dict[str, Any]:
        """Settings beyond the options that shape the replies (part of the key when any)."""
        return {}

    def advice(self, gen: Generation) -> str:
        """What to do about failures like `gen` that keep coming (for TeacherServerDown)."""
        return "check the teacher's server and settings"

    def json_budget(self, options: dict[str, Any]) -> int | None:
        """The total length json-mode strings are held to (None: unbounded)."""
        return None

    async def count_messages(self, messages: list[dict[str, str]]) -> int:
        """The prompt's tokens; a backend with the model's tokenizer at hand counts exactly."""
        return estimate_tokens(messages)

    async def count_text(self, text: str) -> int:
        """A text's tokens (no chat template)."""
        return max(0, estimate_tokens([{"content": text}]) - 4)

    def context_budget(self) -> int:
        """The most context a request may use: the configured num_ctx, unless the backend can
        raise it for a long prompt (Ollama, up to max_num_ctx and the trained context)."""
        return int(self.base_options.get("num_ctx", 8192))

    def options_for(self, reask: int) -> dict[str, Any]:
        """The options of the request after `reask` unparsable replies."""
        options = dict(self.base_options)
        if reask and self.spec.reask == "warmer":
            options["seed"] = options.get("seed", 0) + reask
            options["temperature"] = max(float(options.get("temperature", 0.0)), RETRY_TEMPERATURE)
        return options

    async def reflect(self, stage: str, pair: Pair) -> ReflectResult:
        """Ask the teacher to reflect on `pair` at `stage`, retrying within the budgets.

        Raises TeacherError (carrying the calls made) when the teacher cannot go on at all.
        """
        result = ReflectResult()
        fitted = await fit_request(
            lambda p: build_prompt(stage, p, self.output_mode, self.schema_chars, self.prompt_set),
            pair,
            self.count_messages,
            self.count_text,
            self.context_budget(),
            int(self.base_options.get("num_predict", 2048)),
            self.spec.trim,
        )
        if isinstance(fitted, TooLong):
            # Never sent: recorded as a call so the reason is kept with the sample.
            prompt = build_prompt(stage, pair, self.output_mode, self.schema_chars, self.prompt_set)
            now = datetime.now(UTC)
            gen = Generation(error_kind="prompt_too_long", error_message=fitted.reason)
            call = self._call(prompt, dict(self.base_options), gen, 1, now, now)
            call.outcome = Outcome.TOO_LONG
            result.calls.append(call)
            result.outcome = Outcome.TOO_LONG
            return result
        prompt = fitted.prompt
        epoch = self._down_epoch
        reasks = 0
        resends = 0
        reroutes = 0
        while True:
            options = self.options_for(reasks)
            options["num_predict"] = fitted.num_predict
            if self._down_epoch != epoch:
                raise TeacherServerDown(self._down, result.calls)
            asked = datetime.now(UTC)
            try:
                gen = await self._send(prompt, options)
            except TeacherError as exc:
                # Raised before a request left (a pool with no host left): keep what was sent.
                raise TeacherError(str(exc), [*result.calls, *exc.calls]) from None
            unreadable = _make_storable(gen)  # a reply that is not text fails this sample only
            finished = gen.finished_at or datetime.now(UTC)
            started = gen.started_at or asked
            call = self._call(prompt, options, gen, len(result.calls) + 1, started, finished)
            if fitted.note:
                call.options = {**options, "srt_trimmed": fitted.note}
                call.prompt_truncated = True
            result.calls.append(call)
            self._count(gen, result.calls)
            if gen.error_kind is not None:
                final = FINAL_KINDS.get(gen.error_kind)
                if final is not None and not gen.fatal:
                    call.outcome = result.outcome = final
                    return result
                result.outcome = "error"
                if gen.rerouted and reroutes < MAX_REROUTES:
                    reroutes += 1
                    continue
                if gen.retryable and resends < self.retry.transport_retries:
                    resends += 1
                    await asyncio.sleep(self.retry.delay(resends))
                    continue
                if gen.fatal:
                    raise TeacherError(gen.fatal, result.calls)
                return result
            if unreadable is not None:
                parsed = unreadable
            elif stage == "merge":
                parsed = parse_merge_reply(
                    self.output_mode, gen.text, pair, hit_limit=gen.hit_limit
                )
            else:
                parsed = _parse(stage, self.output_mode, gen.text, pair, gen.hit_limit)
            call.outcome = parsed.outcome
            call.reflection = parsed.reflection
            call.error_message = parsed.detail
            result.outcome = parsed.outcome
            if parsed.reflection is not None:
                result.reflection = parsed.reflection
                return result
            reasks += 1
            if reasks >= self.max_attempts:
                return result

    def _count(self, gen: Generation, calls: list[TeacherCall]) -> None:
        """Track failed requests in a row; TeacherServerDown when one kind lasts."""
        if gen.error_kind is None:
            self._streak, self._streak_length = None, 0
            return
        if gen.error_kind in NOT_LASTING or gen.rerouted:
            # A request lost with one host of a pool says nothing of the others: the pool takes
            # that host out and sends the request elsewhere.
            return
        # The same status (or, for a rejection, the same message) is the same failure again.
        same = gen.error_message if gen.error_kind == "rejected" else None
        streak = (gen.error_kind, gen.status, same)
        if streak == self._streak:
            self._streak_length += 1
        else:
            self._streak, self._streak_length = streak, 1
        if self._streak_length >= self.retry.pause_after:
            n = self._streak_length
            self._streak, self._streak_length = None, 0
            self._down = (
                f"stopped after {n} failed requests in a row to {self.name!r} "
                f"({self.model} at {self.host or self.backend}): {gen.error_message}. "
                f"{_capital(self.advice(gen))}; then run the same command again: it resumes "
                "where it stopped"
            )
            self._down_epoch += 1
            raise TeacherServerDown(self._down, calls)

    async def ask(
        self, prompt: Prompt, options: dict[str, Any], attempt: int
    ) -> tuple[TeacherCall, Generation]:
        """One request outside the reflect loop (the judge asks its own prompts): the call as it
        would be stored, and the generation (reply, counts, or error and whether to retry)."""
        asked = datetime.now(UTC)
        gen = await self._send(prompt, options)
        finished = datetime.now(UTC)
        return self._call(prompt, options, gen, attempt, gen.started_at or asked, finished), gen

    def _call(
        self,
        prompt: Prompt,
        options: dict[str, Any],
        gen: Generation,
        attempt: int,
        started: datetime,
        finished: datetime,
    ) -> TeacherCall:
        return TeacherCall(
            stage=prompt.stage,
            attempt=attempt,
            teacher_name=self.name,
            backend=self.backend,
            model=self.model,
            model_digest=self.model_digest,
            host=gen.host or self.host,
            options=gen.options if gen.options is not None else options,
            prompt_version=prompt.version,
            output_mode=prompt.output_mode,
            messages=prompt.messages,
            raw_reply=gen.text,
            outcome="error" if gen.error_kind else "parse_failed",
            reflection=None,
            prompt_tokens=gen.prompt_tokens,
            prompt_eval_count=gen.prompt_eval_count,
            prompt_truncated=gen.prompt_truncated,
            eval_count=gen.eval_count,
            total_duration_ms=gen.total_duration_ms,
            load_duration_ms=gen.load_duration_ms,
            prompt_eval_duration_ms=gen.prompt_eval_duration_ms,
            eval_duration_ms=gen.eval_duration_ms,
            error_kind=gen.error_kind,
            error_message=gen.error_message,
            started_at=started,
            finished_at=finished,
            thinking=gen.thinking,
            thinking_tokens=gen.thinking_tokens,
        )


def reply_too_long(chars: int, limit: int, text: str | None) -> Generation:
    """The failure of a reply cut off at `limit` characters (`chars` received), keeping at most
    `limit` characters of what came."""
    return Generation(
        text=text[:limit] if text else None,
        error_kind="reply_too_long",
        error_message=(
            f"the reply passed {limit:,} characters ({chars:,} received) and was cut off: raise "
            "reply_chars in the [limits] table of models.toml if such long replies are wanted"
        ),
    )


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


# A lone surrogate (a "\\ud800" escape in the server's JSON) is not text: DuckDB cannot store it.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _make_storable(gen: Generation) -> Parsed | None:
    """Make the reply storable; a failed Parsed when it is not text (it holds lone surrogates, kept
    in the stored reply as their escapes, so the call is recorded and the reply can be read)."""
    if gen.thinking is not None:
        gen.thinking = _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", gen.thinking)
    if gen.text is None:
        return None
    found = _LONE_SURROGATE.search(gen.text)
    if found is None:
        return None
    gen.text = _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", gen.text)
    return Parsed(
        "parse_failed",
        detail=f"the reply holds a lone surrogate (\\u{ord(found.group()):04x}), which is not text",
    )


def _parse(stage: str, mode: str, text: str | None, pair: Pair, hit_limit: bool) -> Parsed:
    """parse_reply, with a reply too deeply nested (or with too long a number) to read failing
    this sample alone instead of the run."""
    try:
        return parse_reply(stage, mode, text, pair, hit_limit=hit_limit)
    except (RecursionError, ValueError) as exc:
        reason = "nests too deeply" if isinstance(exc, RecursionError) else f"is unreadable ({exc})"
        return Parsed("parse_failed", detail=f"the reply's JSON {reason}")


def teacher_key(
    backend: str,
    model: str,
    digest: str | None,
    spec: TeacherSpec,
    options: dict[str, Any],
    extra: dict[str, Any] | None = None,
    prompt_set: PromptSet | None = None,
) -> str:
    """A readable, stable fingerprint of everything that shapes the replies: backend, model and its
    digest, the prompt set's versions (its content hash), output mode and options (not timeouts,
    concurrency or retries, so raising max_attempts to retry failures keeps the replies already
    made). The paper profile's greedy re-asks and reference trimming make other replies, so they
    are part of it too (absent at their defaults, which keeps the default profile's keys)."""
    identity: dict[str, Any] = {
        "backend": backend,
        "model": model,
        "digest": digest,
        "output": spec.output,
        # The set's content hash, not its name: a renamed, unchanged copy keeps the replies.
        "prompts": (prompt_set or load_prompt_set(spec.prompts)).digest,
        "options": options,
        **(extra or {}),
    }
    if spec.reask != "warmer":
        identity["reask"] = spec.reask
    if spec.trim != "fit":
        identity["trim"] = spec.trim
    blob = json.dumps(identity, sort_keys=True).encode()
    return f"{backend}/{model}/{hashlib.sha256(blob).hexdigest()[:12]}"
