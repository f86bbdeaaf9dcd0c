"""`srt reflect`: run one teacher stage over a dataset file, without scoring or selection.

The work is `srt_local.reflect_file`; this command reads the file, renders progress on stderr and
writes one JSON line per sample on stdout or in --out (written whole, at the end).
"""

from __future__ import annotations

import os
import tempfile
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
from srt_local.formats import DatasetFileError, read_records
from srt_local.reflect_file import FileReflection, ReflectCounts
from srt_local.run.vocabulary import Outcome, TeacherStage
from srt_local.store import Store
from srt_local.teachers.base import TeacherError


@click.command()
@click.argument(
    "input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--stage",
    type=click.Choice([s.value for s in TeacherStage]),
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
    help="Requests in flight at once (default: the teacher's models.toml concurrency).",
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
    empty, echo, refused, too_long, rejected, reply_too_long, error), the reflected instruction/input/output, the critique, the raw
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
        job = FileReflection(store, TeacherStage(stage), records, progress=_show)
        try:
            job.run(
                name,
                config,
                concurrency,
                log=say,
            )
        except TeacherError as exc:
            done = len(job.lines)
            if done:
                _write(out_path, job.lines)
            report_error(
                f"{exc}\n{done} of {len(records)} samples were done"
                + (f" and written to {out_path}" if done and out_path else "")
            )
            raise SystemExit(EXIT_FAILED) from None
    _write(out_path, job.lines)
    say(_progress_line(job.counts(), final=True))


def _progress_line(counts: ReflectCounts, final: bool = False) -> str:
    elapsed = max(counts.elapsed_s, 1e-9)
    failed = {k: v for k, v in counts.outcomes.items() if k != Outcome.OK}
    failures = ", ".join(f"{k} {v}" for k, v in sorted(failed.items())) or "none"
    errors = ", ".join(f"{k} {v}" for k, v in sorted(counts.request_errors.items()))
    return (
        f"{'done' if final else 'reflect'}: {counts.done}/{counts.total} samples, "
        f"{counts.calls} calls, {counts.calls / elapsed:.2f} calls/s, "
        f"ok {counts.outcomes.get(Outcome.OK, 0)}, failed: {failures}"
        + (f"; request errors: {errors}" if errors else "")
    )


def _show(counts: ReflectCounts) -> None:
    say(_progress_line(counts))


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
