"""`srt judge`: does the selection help? A judge compares kept samples with a rival, both orders."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from srt_local.commands.common import UserError, db_option, err_console, json_text, say
from srt_local.config import load_models
from srt_local.judge.overrides import apply_verdicts, unapply
from srt_local.judge.records import AGAINST
from srt_local.judge.results import JudgedComparison, judged_comparisons
from srt_local.judge.runner import JudgeError, JudgeSummary, check_run, judge_run
from srt_local.judge.stats import WinRate
from srt_local.store import Store
from srt_local.teachers import open_teacher


@click.command()
@click.argument("run_id", metavar="RUN", type=int)
@click.option(
    "--judge",
    "judge_name",
    default="auto",
    show_default=True,
    help="The teacher of models.toml that judges (Ollama or embedded), or auto.",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="Only the first N kept samples."
)
@click.option(
    "--against",
    type=click.Choice(AGAINST),
    default="original",
    show_default=True,
    help="original: each kept pair against its own imported pair; random: against a same-size "
    "random sample of the dataset (seeded by --seed).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the random control's draw and of the bootstrap intervals.",
)
@click.option(
    "--apply",
    "apply_",
    is_flag=True,
    help="Then reject (as the judge, not as you) every kept sample that lost to its original "
    "in both orders; export follows it, your own overrides still win.",
)
@click.option(
    "--unapply", is_flag=True, help="Remove the judge's rejects from the run; no judging."
)
@db_option
def judge(
    run_id: int,
    judge_name: str,
    limit: int | None,
    against: str,
    seed: int,
    apply_: bool,
    unapply: bool,
    db_path: Path | None,
) -> None:
    """Judge run RUN's kept samples against their originals (or a random control).

    Each kept pair is compared with its rival twice, shown first and shown second, on
    helpfulness, relevance, accuracy and level of detail. Every call is stored; a rerun asks only
    what is missing. Prints the win rate with its bootstrap 95% interval, the length-controlled
    win rate and the judge's position consistency as JSON on stdout.

    Example: srt judge 1 --judge ollama --limit 50 && srt report 1 --out report.html
    """
    if apply_ and unapply:
        raise UserError("give --apply or --unapply, not both")
    if apply_ and against != "original":
        raise UserError("--apply acts on verdicts against the original; drop --against random")
    with Store.open(db_path) as store:
        if unapply:
            removed = _unapply(store, run_id)
            say(f"removed {removed} judge overrides from run {run_id}")
            return
        try:
            check_run(store, run_id)  # before the judge model is looked for and loaded
            summary = asyncio.run(_judge(store, run_id, judge_name, against, seed, limit))
        except JudgeError as exc:
            raise UserError(str(exc)) from None
        if summary.comparisons == 0:
            say(f"run {run_id} keeps no samples: nothing to judge", "yellow")
        say(
            f"judged {summary.judged} orders now ({summary.failed} without a verdict, "
            f"{summary.calls} calls); {summary.already} were stored already"
        )
        if apply_:
            n = apply_verdicts(store, run_id, summary.judge_key)
            say(
                f"run {run_id}: {n} samples rejected by the judge (lost both orders to their "
                "original); undo with --unapply"
            )
        found = [
            c
            for c in judged_comparisons(store, run_id)
            if c.judge_key == summary.judge_key and c.against == against and c.seed == summary.seed
        ]
    for comparison in found:
        for line in describe(comparison):
            say(line)
        click.echo(json_text(as_json(comparison)))


def _unapply(store: Store, run_id: int) -> int:
    if not store.query("SELECT 1 FROM runs WHERE run_id = ?", [run_id]):
        raise UserError(f"no run {run_id} in {store.path}")
    return unapply(store, run_id)


async def _judge(
    store: Store, run_id: int, name: str, against: str, seed: int, limit: int | None
) -> JudgeSummary:
    config = load_models()
    teacher = await open_teacher(name, config, log=lambda line: say(line, "dim"))
    progress = Progress(
        TextColumn("judging"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
    )
    task = progress.add_task("judge", total=None)

    def show(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    try:
        with progress:
            return await judge_run(store, run_id, teacher, against, seed, limit, show)
    finally:
        await teacher.aclose()


def _rate(rate: WinRate) -> str:
    return (
        f"{rate.win_rate:.1%} [{rate.low:.1%}, {rate.high:.1%}] "
        f"({rate.wins} win / {rate.ties} tie / {rate.losses} loss of {rate.n})"
    )


def describe(c: JudgedComparison) -> list[str]:
    """The figures of one comparison as lines for the terminal."""
    s = c.summary
    lines = [f"selected vs {c.against} (judge {c.judge}, seed {c.seed}): {_rate(s.overall)}"]
    if s.length_controlled is not None:
        lines.append(
            f"  length-controlled win rate {s.length_controlled.win_rate:.1%} "
            f"[{s.length_controlled.low:.1%}, {s.length_controlled.high:.1%}]; mean response "
            f"length difference {s.mean_length_diff:+.0f} characters"
        )
    lines.append(
        f"  the two orders agree on {s.consistency:.0%} of samples; the example shown first "
        f"won {s.first_position_wins:.0%} of orders"
    )
    for name, rate in s.by_branch.items():
        lines.append(f"  branch {name}: {_rate(rate)}")
    for name, rate in s.by_band.items():
        lines.append(f"  IFD {name}: {_rate(rate)}")
    if c.incomplete:
        lines.append(f"  {c.incomplete} samples left out: an order has no verdict")
    return lines


def _num(value: float | None) -> float | None:
    """JSON has no NaN: an undefined figure (no samples) is null."""
    return None if value is None or math.isnan(value) else value


def _rate_json(rate: WinRate) -> dict[str, Any]:
    return {
        "n": rate.n,
        "wins": rate.wins,
        "ties": rate.ties,
        "losses": rate.losses,
        "win_rate": _num(rate.win_rate),
        "ci95": [_num(rate.low), _num(rate.high)],
    }


def as_json(c: JudgedComparison) -> dict[str, Any]:
    """The figures of one comparison as a JSON object (one line of `srt judge`'s stdout)."""
    s = c.summary
    lc = s.length_controlled
    return {
        "run": c.run_id,
        "against": c.against,
        "judge_key": c.judge_key,
        "seed": c.seed,
        "bootstrap": {"seed": c.boot_seed, "resamples": s.overall.n_boot},
        **_rate_json(s.overall),
        "length_controlled_win_rate": lc.win_rate if lc is not None else None,
        "length_controlled_ci95": [_num(lc.low), _num(lc.high)] if lc is not None else None,
        "mean_length_diff": _num(s.mean_length_diff),
        "median_length_diff": _num(s.median_length_diff),
        "position_consistency": _num(s.consistency),
        "first_position_wins": _num(s.first_position_wins),
        "incomplete": c.incomplete,
        "by_branch": {k: _rate_json(v) for k, v in s.by_branch.items()},
        "by_ifd_band": {k: _rate_json(v) for k, v in s.by_band.items()},
    }
