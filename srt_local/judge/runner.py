"""`srt judge`: compare every kept sample with its rival, in both orders, through a teacher.

Any configured teacher can judge (Ollama or embedded): the judge sends its own prompt through the
teacher's transport (`ChatTeacher.ask`), with the teacher's options, retry policy and re-ask
budget. A comparison whose judgement is stored is never asked again; the key is (run, sample,
against, judge key, seed, side the selected pair was shown on).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from srt_local.errors import SrtError
from srt_local.judge.prompt import build_judge_prompt, parse_verdict, prompt_version
from srt_local.judge.records import (
    AGAINST,
    SIDES,
    Comparison,
    JudgedCall,
    JudgementKey,
    comparisons,
    judged_keys,
    store_calls,
    store_judgement,
)
from srt_local.store import Store
from srt_local.teachers.base import Teacher
from srt_local.teachers.chat import ChatTeacher


class JudgeError(SrtError):
    """Judging cannot start or go on (unknown run, a teacher that cannot judge, a dead server)."""


@dataclass
class JudgeSummary:
    run_id: int
    against: str
    judge_key: str
    seed: int
    comparisons: int  # samples compared (each in two orders)
    already: int  # orders stored before this call
    judged: int  # orders judged now
    failed: int  # of those, orders with no usable verdict
    calls: int  # requests sent now


def judge_key(teacher: ChatTeacher) -> str:
    """What shapes a verdict: backend, model and digest, options and the judge prompt's version."""
    identity = {
        "backend": teacher.backend,
        "model": teacher.model,
        "digest": teacher.model_digest,
        "options": teacher.base_options,
        "prompt": prompt_version(),
    }
    blob = json.dumps(identity, sort_keys=True).encode()
    return f"{teacher.backend}/{teacher.model}/{hashlib.sha256(blob).hexdigest()[:12]}"


def key_seed(against: str, seed: int) -> int:
    """The seed in a judgement's key: the random draw's; 0 against the original (no draw)."""
    return seed if against == "random" else 0


class _Fatal(JudgeError):
    """The judge cannot go on; carries the calls made for the comparison in progress."""

    def __init__(self, message: str, calls: list[JudgedCall]) -> None:
        super().__init__(message)
        self.calls = calls


async def judge_order(
    teacher: ChatTeacher, comparison: Comparison, selected_side: str
) -> tuple[list[JudgedCall], str | None, str | None]:
    """Ask which example is better with the selected pair shown as `selected_side`.

    Retries a failed request (transport budget) and re-asks an unparsable reply (up to the
    teacher's max_attempts); returns every call, and the verdict and reason (None when none parsed).
    """
    if selected_side == "A":
        prompt = build_judge_prompt(comparison.selected, comparison.other)
    else:
        prompt = build_judge_prompt(comparison.other, comparison.selected)
    calls: list[JudgedCall] = []
    reasks = 0
    resends = 0
    while True:
        options = teacher.options_for(reasks)
        call, gen = await teacher.ask(prompt, options, len(calls) + 1)
        if gen.error_kind is not None:
            call.outcome = "error"
            calls.append(JudgedCall(call, None, None))
            if gen.retryable and resends < teacher.retry.transport_retries:
                resends += 1
                await asyncio.sleep(teacher.retry.delay(resends))
                continue
            if gen.fatal:
                raise _Fatal(gen.fatal, calls)
            return calls, None, None
        parsed = parse_verdict(gen.text)
        call.outcome = parsed.outcome
        call.error_message = parsed.detail
        if parsed.verdict is not None:
            calls.append(JudgedCall(call, parsed.verdict.verdict, parsed.verdict.reason))
            return calls, parsed.verdict.verdict, parsed.verdict.reason
        calls.append(JudgedCall(call, None, None))
        reasks += 1
        if reasks >= teacher.max_attempts:
            return calls, None, None


def check_run(store: Store, run_id: int) -> None:
    """JudgeError unless the store holds run `run_id` (checked before a judge model is loaded)."""
    if not store.query("SELECT 1 FROM runs WHERE run_id = ?", [run_id]):
        known = ", ".join(str(r[0]) for r in store.query("SELECT run_id FROM runs ORDER BY 1"))
        raise JudgeError(f"no run {run_id} in {store.path} (runs: {known or 'none yet'})")


async def judge_run(
    store: Store,
    run_id: int,
    teacher: Teacher,
    against: str = "original",
    seed: int = 0,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> JudgeSummary:
    """Judge the run's kept samples against their rivals, both orders each, skipping what is
    stored; `progress(done, total)` after each stored judgement (orders, not samples)."""
    if against not in AGAINST:
        raise JudgeError(f"--against must be one of {', '.join(AGAINST)}, not {against!r}")
    if limit is not None and limit < 1:
        raise JudgeError(f"--limit must be at least 1, got {limit}")
    if not isinstance(teacher, ChatTeacher):
        raise JudgeError(f"the teacher {teacher.name!r} cannot judge: it is not a chat model")
    check_run(store, run_id)
    seed = key_seed(against, seed)
    key = judge_key(teacher)
    todo_pairs = comparisons(store, run_id, against, seed, limit)
    done = judged_keys(store, run_id, against, key, seed)
    todo = [(c, side) for c in todo_pairs for side in SIDES if (c.sample_id, side) not in done]
    summary = JudgeSummary(
        run_id, against, key, seed, len(todo_pairs), len(todo_pairs) * 2 - len(todo), 0, 0, 0
    )
    total = len(todo_pairs) * 2
    pending = iter(todo)

    async def one(comparison: Comparison, side: str) -> None:
        jkey = JudgementKey(run_id, comparison.sample_id, against, key, seed, side)
        try:
            calls, verdict, reason = await judge_order(teacher, comparison, side)
        except _Fatal as exc:
            store_calls(store, jkey, comparison.other_sample_id, exc.calls)
            summary.calls += len(exc.calls)
            raise JudgeError(str(exc)) from None
        store_judgement(store, jkey, comparison, calls, verdict, reason)
        summary.calls += len(calls)
        summary.judged += 1
        summary.failed += verdict is None
        if progress is not None:
            progress(summary.already + summary.judged, total)

    async def worker() -> None:
        # A fixed pool of workers, not a task per comparison: a large run stays small in memory.
        for comparison, side in pending:
            await one(comparison, side)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(teacher.concurrency, len(todo))):
                group.create_task(worker())
    except* JudgeError as errors:
        raise errors.exceptions[0] from None
    return summary
