"""`srt reflect`: run one teacher stage over a dataset file, without scoring or selection.

Every request is stored in the store's teacher_calls (sample_id NULL: the pairs are not imported);
the result is one JSON line per sample on stdout or in --out (written whole, at the end).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import click

from srt_local.commands.common import (
    EXIT_FAILED,
    UserError,
    db_option,
    json_text,
    report_error,
    say,
)
from srt_local.config import load_models
from srt_local.formats import DatasetFileError, SourceRecord, read_records
from srt_local.store import Store
from srt_local.teacher_log import record_call
from srt_local.teachers import ReflectResult, Teacher, TeacherError, open_teacher

PROGRESS_EVERY = 1.0  # seconds between progress lines


@click.command()
@click.argument(
    "input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--stage",
    type=click.Choice(["instruction", "response"]),
    required=True,
    help="instruction: a new instruction and its answer; response: a better answer.",
)
@click.option(
    "--teacher",
    "teacher_name",
    default=None,
    help="A teacher from models.toml, or auto (Ollama if it answers, else the embedded one). "
    "Default: [defaults] teacher.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Requests in flight at once (Ollama; the embedded teacher runs one at a time).",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N pairs.")
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the JSON lines here (replaced whole at the end) instead of stdout.",
)
@click.option(
    "--models-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An extra models.toml read after the shipped and user files.",
)
@db_option
def reflect(
    input_path: Path,
    stage: str,
    teacher_name: str | None,
    concurrency: int | None,
    limit: int | None,
    out_path: Path | None,
    models_file: Path | None,
    db_path: Path | None,
) -> None:
    """Ask a teacher to reflect on every pair of INPUT (.json, .jsonl, .csv, .parquet).

    Each output line holds the sample's index and location, the outcome (ok, parse_failed,
    empty, echo, refused, error), the reflected instruction/input/output, the critique, the raw
    reply of the last attempt and the number of attempts. Every request, retries included, is
    stored in the store's teacher_calls table. Progress goes to stderr.
    """
    config = load_models(models_file)
    try:
        read = read_records(input_path)
    except DatasetFileError as exc:
        raise UserError(str(exc)) from None
    for error in read.errors[:10]:
        say(f"skipped: {error}", "yellow")
    if len(read.errors) > 10:
        say(f"skipped: {len(read.errors) - 10} more bad records", "yellow")
    records = read.records[:limit] if limit else read.records
    if not records:
        raise UserError(f"{input_path}: no usable records")
    name = teacher_name or config.defaults.teacher
    with Store.open(db_path) as store:
        run = _Run(store, stage, records)
        try:
            asyncio.run(run.go(name, config, concurrency))
        except TeacherError as exc:
            done = len(run.lines)
            if done:
                _write(out_path, run.lines)
            report_error(
                f"{exc}\n{done} of {len(records)} samples were done"
                + (f" and written to {out_path}" if done and out_path else "")
            )
            raise SystemExit(EXIT_FAILED) from None
    _write(out_path, run.lines)
    run.report(final=True)


class _Run:
    """One reflect run: the workers, the store writes and the progress line."""

    def __init__(self, store: Store, stage: str, records: list[SourceRecord]) -> None:
        self.store = store
        self.stage = stage
        self.records = records
        self.lines: dict[int, dict[str, Any]] = {}
        self.outcomes: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.n_calls = 0
        self.started = time.monotonic()
        self.last_report = 0.0

    async def go(self, name: str, config: Any, concurrency: int | None) -> None:
        teacher = await open_teacher(
            name,
            config,
            log=say,
            concurrency=concurrency,
        )
        self.started = time.monotonic()
        try:
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
        finally:
            await teacher.aclose()

    async def _worker(self, teacher: Teacher, queue: asyncio.Queue[int]) -> None:
        while not queue.empty():
            index = queue.get_nowait()
            record = self.records[index]
            try:
                result = await teacher.reflect(self.stage, record.pair)
            except TeacherError as exc:
                self._store(ReflectResult(exc.calls), teacher.key)
                raise
            call_ids = self._store(result, teacher.key)
            self.lines[index] = _line(index, record, result, call_ids)
            self.outcomes[result.outcome] += 1
            self.report()

    def _store(self, result: ReflectResult, key: str) -> list[int]:
        self.n_calls += len(result.calls)
        for call in result.calls:
            if call.error_kind:
                self.errors[call.error_kind] += 1
        with self.store.transaction() as con:
            return [record_call(con, call, None, "ori", key) for call in result.calls]

    def report(self, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last_report < PROGRESS_EVERY:
            return
        self.last_report = now
        elapsed = max(now - self.started, 1e-9)
        failed = {k: v for k, v in self.outcomes.items() if k != "ok"}
        failures = ", ".join(f"{k} {v}" for k, v in sorted(failed.items())) or "none"
        errors = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items()))
        say(
            f"{'done' if final else 'reflect'}: {len(self.lines)}/{len(self.records)} samples, "
            f"{self.n_calls} calls, {self.n_calls / elapsed:.2f} calls/s, "
            f"ok {self.outcomes['ok']}, failed: {failures}"
            + (f"; request errors: {errors}" if errors else "")
        )


def _line(
    index: int, record: SourceRecord, result: ReflectResult, call_ids: list[int]
) -> dict[str, Any]:
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
        "error": last.error_message if last and result.outcome != "ok" else None,
        "attempts": len(result.calls),
        "call_ids": call_ids,
    }


def _write(out_path: Path | None, lines: dict[int, dict[str, Any]]) -> None:
    text = "".join(json_text(lines[i]) + "\n" for i in sorted(lines))
    if out_path is None:
        click.echo(text, nl=False)
        return
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
