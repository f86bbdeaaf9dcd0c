"""Reflect every pair of a dataset file with one teacher stage, without scoring or selection.

Every request is stored in the store's teacher_calls (sample_id NULL: the pairs are not imported);
each pair's result is one JSON-ready dict, in input order. `srt reflect` parses its options,
calls this and renders the progress and the lines.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from srt_local.config import ModelsConfig
from srt_local.formats import SourceRecord
from srt_local.run.protocols import Reflector
from srt_local.run.repository import RunRepository
from srt_local.run.vocabulary import Kind, Outcome, TeacherStage
from srt_local.store import Store
from srt_local.teachers.base import ReflectResult, TeacherError

PROGRESS_EVERY = 1.0  # seconds between progress reports


@dataclass(frozen=True)
class ReflectCounts:
    """How far a file reflection is."""

    done: int
    total: int
    calls: int
    elapsed_s: float
    outcomes: dict[str, int]
    request_errors: dict[str, int]  # transport errors by kind, over every request


class FileReflection:
    """One reflection of a file's records: the lines made so far survive a fatal teacher error."""

    def __init__(
        self,
        store: Store,
        stage: TeacherStage,
        records: list[SourceRecord],
        progress: Callable[[ReflectCounts], None] | None = None,
    ) -> None:
        self.repository = RunRepository(store)
        self.stage = stage
        self.records = records
        self.progress = progress
        self.lines: dict[int, dict[str, Any]] = {}
        self.outcomes: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.n_calls = 0
        self.started = time.monotonic()
        self.last_report = 0.0

    def run(
        self,
        teacher_name: str,
        config: ModelsConfig,
        concurrency: int | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        """Open the teacher and reflect every record; blocking. Raises TeacherError if it dies."""
        asyncio.run(self._open_and_run(teacher_name, config, concurrency, log))

    async def _open_and_run(
        self,
        teacher_name: str,
        config: ModelsConfig,
        concurrency: int | None,
        log: Callable[[str], None] | None,
    ) -> None:
        from srt_local.teachers import open_teacher

        teacher = await open_teacher(teacher_name, config, log=log, concurrency=concurrency)
        try:
            await self.reflect_all(teacher)
        finally:
            await teacher.aclose()

    async def reflect_all(self, teacher: Reflector) -> None:
        """Reflect every record with `teacher`, `teacher.concurrency` at once."""
        self.started = time.monotonic()
        queue: asyncio.Queue[int] = asyncio.Queue()
        for index in range(len(self.records)):
            queue.put_nowait(index)
        workers = [
            asyncio.create_task(self._worker(teacher, queue))
            for _ in range(min(teacher.concurrency, len(self.records)))
        ]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()

    async def _worker(self, teacher: Reflector, queue: asyncio.Queue[int]) -> None:
        while not queue.empty():
            index = queue.get_nowait()
            record = self.records[index]
            try:
                result = await teacher.reflect(self.stage, record.pair)
            except TeacherError as exc:
                self._store(ReflectResult(exc.calls), teacher.key)
                raise
            call_ids = self._store(result, teacher.key)
            self.lines[index] = reflection_line(index, record, result, call_ids)
            self.outcomes[result.outcome] += 1
            self.report()

    def _store(self, result: ReflectResult, key: str) -> list[int]:
        self.n_calls += len(result.calls)
        for call in result.calls:
            if call.error_kind:
                self.errors[call.error_kind] += 1
        return self.repository.save_calls(None, Kind.ORI, key, result.calls)

    def counts(self) -> ReflectCounts:
        return ReflectCounts(
            done=len(self.lines),
            total=len(self.records),
            calls=self.n_calls,
            elapsed_s=time.monotonic() - self.started,
            outcomes=dict(self.outcomes),
            request_errors=dict(self.errors),
        )

    def report(self) -> None:
        now = time.monotonic()
        if self.progress is None or now - self.last_report < PROGRESS_EVERY:
            return
        self.last_report = now
        self.progress(self.counts())


def reflection_line(
    index: int, record: SourceRecord, result: ReflectResult, call_ids: list[int]
) -> dict[str, Any]:
    """One output line: the sample, the outcome, the reflected texts and the last reply."""
    last = result.calls[-1] if result.calls else None
    r = result.reflection
    pair = record.pair
    return {
        "index": index,
        "location": record.location,
        "outcome": result.outcome,
        "instruction": (r.instruction or pair.instruction) if r else None,
        "input": r.input if r else None,
        "output": r.output if r else None,
        "critique": r.critique if r else None,
        "raw_reply": last.raw_reply if last else None,
        "error": last.error_message if last and result.outcome != Outcome.OK else None,
        "attempts": len(result.calls),
        "call_ids": call_ids,
    }
