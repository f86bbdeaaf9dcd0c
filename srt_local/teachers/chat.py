"""The reflect loop every chat teacher shares: prompt, send, parse, retry, record every attempt.

A backend implements `_send`: one request, returning a Generation (a reply, or an error kind and
whether it is worth retrying). This module owns the two retry budgets:
- a reply that does not parse is asked again, up to `max_attempts` replies, with a new seed and
  (when the configured temperature is 0) a warmer temperature, since greedy decoding would repeat
  the same text whatever the seed (the `paper` profile re-asks once with the same options, as the
  reference does);
- a request that failed in transit (timeout, 5xx, queue full, stream cut) is sent again after an
  exponential back-off with jitter, up to `RetryPolicy.transport_retries` times per reflection.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from srt_local.config import TeacherSpec
from srt_local.merge import parse_merge_reply
from srt_local.pairs import Pair
from srt_local.parsing import parse_reply
from srt_local.prompts import (
    Prompt,
    PromptSet,
    build_prompt,
    estimate_tokens,
    load_prompt_set,
)
from srt_local.run.vocabulary import Outcome
from srt_local.teacher_fit import TooLong, fit_request
from srt_local.teachers.base import ReflectResult, TeacherCall, TeacherError

# A retry after an unparsable reply at temperature 0 needs some randomness to differ.
RETRY_TEMPERATURE = 0.7
# Errors that say the request can never fit the model's context: final, not retried.
TOO_LONG_ERRORS = frozenset({"prompt_too_long", "context_full"})


@dataclass(frozen=True)
class RetryPolicy:
    """How failed requests are retried: `transport_retries` re-sends per reflection, waiting
    base * 2**(n-1) seconds (at most `max_delay`), scaled by a random factor in [0.5, 1]."""

    transport_retries: int = 4
    base_delay: float = 0.5
    max_delay: float = 20.0

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
        self.base_options = {**self.default_options, **spec.options.as_dict()}
        self.schema_chars = self.json_budget(self.base_options)
        self.prompt_set = load_prompt_set(spec.prompts)
        self.key = teacher_key(
            self.backend, model, model_digest, spec, self.base_options, self.prompt_set
        )

    @abstractmethod
    async def _send(self, prompt: Prompt, options: dict[str, Any]) -> Generation:
        """Send one request; never raise for a failed request, report it in the Generation."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release the client or model."""

    def json_budget(self, options: dict[str, Any]) -> int | None:
        """The total length json-mode strings are held to (None: unbounded)."""
        return None

    async def count_messages(self, messages: list[dict[str, str]]) -> int:
        """The prompt's tokens; a backend with the model's tokenizer at hand counts exactly."""
        return estimate_tokens(messages)

    async def count_text(self, text: str) -> int:
        """A text's tokens (no chat template)."""
        return max(0, estimate_tokens([{"content": text}]) - 4)

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
            int(self.base_options.get("num_ctx", 8192)),
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
        reasks = 0
        resends = 0
        while True:
            options = self.options_for(reasks)
            options["num_predict"] = fitted.num_predict
            asked = datetime.now(UTC)
            gen = await self._send(prompt, options)
            finished = datetime.now(UTC)
            started = gen.started_at or asked
            call = self._call(prompt, options, gen, len(result.calls) + 1, started, finished)
            if fitted.note:
                call.options = {**options, "srt_trimmed": fitted.note}
                call.prompt_truncated = True
            result.calls.append(call)
            if gen.error_kind in TOO_LONG_ERRORS:
                call.outcome = result.outcome = Outcome.TOO_LONG
                return result
            if gen.error_kind is not None:
                result.outcome = "error"
                if gen.retryable and resends < self.retry.transport_retries:
                    resends += 1
                    await asyncio.sleep(self.retry.delay(resends))
                    continue
                if gen.fatal:
                    raise TeacherError(gen.fatal, result.calls)
                return result
            if stage == "merge":
                parsed = parse_merge_reply(
                    self.output_mode, gen.text, pair, hit_limit=gen.hit_limit
                )
            else:
                parsed = parse_reply(
                    stage, self.output_mode, gen.text, pair, hit_limit=gen.hit_limit
                )
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
            host=self.host,
            options=options,
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
        )


def teacher_key(
    backend: str,
    model: str,
    digest: str | None,
    spec: TeacherSpec,
    options: dict[str, Any],
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
    }
    if spec.reask != "warmer":
        identity["reask"] = spec.reask
    if spec.trim != "fit":
        identity["trim"] = spec.trim
    blob = json.dumps(identity, sort_keys=True).encode()
    return f"{backend}/{model}/{hashlib.sha256(blob).hexdigest()[:12]}"
