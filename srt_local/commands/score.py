"""`srt score`: IFD and r-IFD of every pair in a file, one JSON line per sample, in input order."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from srt_local.commands.common import UserError, cell, db_option, err_console, json_text, say
from srt_local.commands.executor_opts import executor_options, ray_settings
from srt_local.config import TEMPLATES, StudentSpec, load_models
from srt_local.executors import RaySettings, open_ray_pool
from srt_local.formats import FORMATS, read_records
from srt_local.pairs import Pair
from srt_local.scoring import score_cached
from srt_local.store import Store
from srt_local.student import PairScore, Student

FIELDS = (
    "status",
    "ifd_ppl",
    "rifd_ppl",
    "ifd_loss",
    "rifd_loss",
    "loss_y_given_x",
    "loss_y",
    "loss_x_given_y",
    "loss_x",
    "n_y_tokens",
    "n_x_tokens",
)


@click.command()
@click.argument("input_file", metavar="INPUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--student",
    default=None,
    help="A student from models.toml, or a path to a .gguf file. Default: models.toml's default.",
)
@click.option(
    "--template",
    type=click.Choice(TEMPLATES),
    default=None,
    help="How x conditions y (and R(y) conditions x). Default: the student's.",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(min=16),
    default=None,
    help="Cut every scored text to this many tokens. Default: the student's (2048).",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Score the first N only.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", *FORMATS]),
    default="auto",
    show_default=True,
    help="The record format; auto reads it from the first record (as `srt import` does).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the JSON lines here (all or nothing). Default: standard output.",
)
@db_option
@click.option("--no-cache", is_flag=True, help="Neither read nor write the store's score cache.")
@executor_options
def score(
    input_file: Path,
    student: str | None,
    template: str | None,
    max_tokens: int | None,
    limit: int | None,
    fmt: str,
    out: Path | None,
    db_path: Path | None,
    no_cache: bool,
    executor: str,
    ray_address: str | None,
    ray_node_ip: str | None,
    workers: int | None,
) -> None:
    """Score every pair of INPUT (.json, .jsonl, .csv or .parquet; alpaca, sharegpt or messages
    records, as `srt import` reads them: a conversation gives its first user turn and the reply
    after it) with a student.

    \b
    One JSON line per sample, in input order:
      index, status ("ok" or why not), ifd_ppl = exp(L(y|x) - L(y)),
      rifd_ppl = exp(L(x|y) - L(x)), ifd_loss, rifd_loss (loss ratios),
      the four mean losses and the token counts they average over
      (and detail, when there is something to say).
    IFD < 1: the instruction helps the student predict the response.

    Scores are cached in the store by (student file, template, max tokens, texts), so a pair is
    never scored twice; --no-cache turns that off. A bad file or record is reported with its
    line (or array index) and field, and nothing is written.
    """
    pairs = _read_pairs(input_file, limit, fmt)
    if out is not None:
        _check_out(out)
    config = load_models()
    ray = ray_settings(config, executor, ray_address, ray_node_ip, workers)
    spec = config.student(student or config.defaults.student)
    spec = replace(
        spec,
        template=template or spec.template,
        max_tokens=max_tokens or spec.max_tokens,
    )
    store_cm = nullcontext(None) if no_cache else Store.open(db_path)
    if ray is not None:
        with store_cm as store:
            scores = _score_on_ray(ray, spec, pairs, store)
    else:
        with store_cm as store, Student.load(spec) as scorer:
            say(
                f"scoring {len(pairs)} samples with {scorer.name} "
                f"(template {scorer.template}, max_tokens {scorer.max_tokens})"
            )
            with _progress(len(pairs)) as report:
                scores = score_cached(scorer, pairs, store, progress=report)
    lines = [_line(index, s) for index, s in enumerate(scores)]
    if out is None:
        click.echo("".join(lines), nl=False)
    else:
        _write_atomically(out, "".join(lines))
        say(f"wrote {len(lines)} lines to {out}")
    _summary(scores)


def _score_on_ray(
    ray: RaySettings, spec: StudentSpec, pairs: list[Pair], store: Store | None
) -> list[PairScore]:
    """The student on Ray actors; this process reads and writes the score cache."""
    pool = open_ray_pool(ray, spec, None, store, say)
    try:
        say(
            f"scoring {len(pairs)} samples with {pool.key.name} on Ray "
            f"(template {pool.key.template}, max_tokens {pool.key.max_tokens})"
        )
        with _progress(len(pairs)) as report:
            return pool.score_all(pairs, progress=report)
    finally:
        pool.close()


def _read_pairs(path: Path, limit: int | None, fmt: str = "auto") -> list[Pair]:
    try:
        result = read_records(path, fmt)
    except OSError as exc:
        raise UserError(str(exc)) from None
    if result.errors:
        for error in result.errors:
            err_console.print(Text.assemble(("bad record: ", "red"), cell(error)))
        raise UserError(f"{path}: {len(result.errors)} bad records; nothing was scored")
    records = result.records[:limit] if limit else result.records
    if not records:
        raise UserError(f"{path}: no records to score")
    return [record.pair for record in records]


def _check_out(out: Path) -> None:
    if out.is_dir():
        raise UserError(f"--out {out}: is a directory")
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: the folder {out.parent} does not exist")


def _line(index: int, score: PairScore) -> str:
    values: dict[str, Any] = asdict(score)
    row: dict[str, Any] = {"index": index, **{k: values[k] for k in FIELDS}}
    if score.detail:
        row["detail"] = score.detail
    return json_text(row) + "\n"


def _write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename it over: never half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _summary(scores: Sequence[PairScore]) -> None:
    by_status: dict[str, int] = {}
    for s in scores:
        by_status[s.status] = by_status.get(s.status, 0) + 1
    parts = ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
    below = sum(1 for s in scores if s.ifd_ppl is not None and s.ifd_ppl < 1)
    say(f"{parts}; IFD < 1 for {below}")


class _RateColumn(ProgressColumn):
    """Samples/s and target tokens/s since the start."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        if elapsed <= 0:
            return Text("")
        tokens = float(task.fields.get("tokens", 0))
        return Text(f"{task.completed / elapsed:.2f} samples/s  {tokens / elapsed:,.0f} tok/s")


@contextmanager
def _progress(total: int) -> Iterator[Any]:
    """A progress bar on stderr; yields the callback score_cached reports to."""
    progress = Progress(
        TextColumn("scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )
    with progress:
        task = progress.add_task("scoring", total=total, tokens=0)

        def report(samples: int, tokens: int) -> None:
            progress.update(task, completed=samples, tokens=tokens)

        yield report
