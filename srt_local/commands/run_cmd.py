"""`srt run` and `srt status`: drive the pipeline and read a run's state back."""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from srt_local.commands.common import UserError, db_option, err_console
from srt_local.config import load_models
from srt_local.pipeline import (
    RunOptions,
    RunProgress,
    RunSummary,
    prepare_run,
    run_pipeline,
)
from srt_local.run.vocabulary import RunStatus
from srt_local.run_status import latest_run_id, list_runs, run_status
from srt_local.store import Store


def execute(store: Store, options: RunOptions, quiet: bool = False) -> RunSummary:
    """Prepare (or find) the run for these options and drive it to its end with a progress display."""
    config = load_models()
    run_id = prepare_run(store, options, config)
    progress = Progress(
        TextColumn("{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]}"),
        TimeElapsedColumn(),
        console=err_console,
        disable=quiet,
    )
    tasks: dict[str, TaskID] = {}
    extra = progress.add_task("throughput", total=None, failed="")

    def show(p: RunProgress) -> None:
        for stage in p.stages:
            if stage.name not in tasks:
                tasks[stage.name] = progress.add_task(stage.name, total=stage.total, failed="")
            failed = ", ".join(f"{k}: {v}" for k, v in stage.failed.items())
            progress.update(
                tasks[stage.name],
                completed=stage.done,
                failed=f"[red]{failed}[/]" if failed else "",
            )
        eta = f"ETA {p.eta_s:.0f}s" if p.eta_s is not None else "ETA -"
        progress.update(
            extra, failed=f"{p.tokens_per_s:.0f} tok/s  {p.calls_per_s:.2f} calls/s  {eta}"
        )

    def log(message: str) -> None:
        progress.console.print(f"[dim]{message}[/]", highlight=False)

    with progress:
        summary = run_pipeline(store, run_id, config, progress=show, log=log)
    return summary


def print_summary(summary: RunSummary, store: Store) -> None:
    err_console.print(
        f"run {summary.run_id}: [bold]{summary.status}[/] in {summary.elapsed_s:.0f}s, "
        f"teacher {summary.teacher}, {summary.teacher_calls} teacher calls"
    )
    table = Table("kept", "rejected", *[f"branch {b}" for b in sorted(summary.by_branch)])
    table.add_row(
        str(summary.kept),
        str(summary.rejected),
        *[str(summary.by_branch[b]) for b in sorted(summary.by_branch)],
    )
    err_console.print(table)
    if summary.failures:
        err_console.print(
            "failures: " + ", ".join(f"{k}: {v}" for k, v in summary.failures.items())
        )
    if summary.status == RunStatus.INCOMPLETE:
        err_console.print(
            "[yellow]some samples met teacher errors; run the same command again to retry them[/]"
        )
    err_console.print(f"store: {store.path}")


@click.command()
@click.argument("dataset")
@click.option("--teacher", default=None, help="A teacher of models.toml, or auto (default).")
@click.option("--student", default=None, help="A student of models.toml or a path to a .gguf.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N samples.")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Teacher calls at once (default: the teacher's own setting).",
)
@click.option(
    "--emit-unreflected",
    is_flag=True,
    help="Also emit kept samples whose response stayed unreflected (Q, ori branches).",
)
@click.option(
    "--full-grid",
    is_flag=True,
    help="Reflect the responses of both branches (A and QA), so later students need no "
    "teacher call at all.",
)
@click.option(
    "--profile",
    type=click.Choice(["default", "paper"]),
    default="default",
    show_default=True,
    help="paper: follow the reference code in every rule (merge stage, greedy re-ask once, "
    "unscorable originals never kept, its trimming); see the README's Fidelity section.",
)
@click.option(
    "--prompts",
    "prompt_set",
    default=None,
    help="A prompt set for the teacher (`srt prompts list`); default: each teacher's own.",
)
@db_option
def run(
    dataset: str,
    teacher: str | None,
    student: str | None,
    limit: int | None,
    concurrency: int | None,
    emit_unreflected: bool,
    full_grid: bool,
    profile: str,
    prompt_set: str | None,
    db_path: Path | None,
) -> None:
    """Run Selective Reflection-Tuning on an imported DATASET; the same command again resumes.

    Stage 1 reflects each instruction and keeps it if the student's IFD rises; stage 2 reflects
    the chosen branch's response and keeps it if r-IFD falls; kept samples need IFD < 1 and
    r-IFD < 1. Ctrl-C stops cleanly: what was stored is kept.
    """
    config = load_models()
    options = RunOptions(
        dataset=dataset,
        teacher=teacher or config.defaults.teacher,
        student=student,
        limit=limit,
        concurrency=concurrency,
        emit_unreflected=emit_unreflected,
        full_grid=full_grid,
        profile=profile,
        prompts=prompt_set,
    )
    with Store.open(db_path) as store:
        summary = execute(store, options)
        print_summary(summary, store)
        click.echo(summary.run_id)


@click.command()
@click.argument("run_id", type=int, required=False)
@db_option
def status(run_id: int | None, db_path: Path | None) -> None:
    """Per-stage counts, failures by kind, throughput and ETA of RUN (default: the latest)."""
    with Store.open(db_path, read_only=True) as store:
        run_id = run_id if run_id is not None else latest_run_id(store)
        if run_id is None:
            raise UserError(f"no runs in {store.path} yet: `srt run DATASET` starts one")
        try:
            st = run_status(store, run_id)
        except LookupError as exc:
            runs = ", ".join(str(r["run_id"]) for r in list_runs(store)) or "none"
            raise UserError(f"{exc} (runs: {runs})") from None
    table = Table(title=f"run {st.run_id} on {st.dataset}: {st.status}", title_justify="left")
    table.add_column("stage")
    table.add_column("done", justify="right")
    table.add_column("of", justify="right")
    for name, done in st.stages.items():
        table.add_row(name, str(done), str(st.samples))
    err_console.print(table)
    err_console.print(
        f"teacher {st.teacher}, student {st.student}; {st.teacher_calls} teacher calls"
    )
    err_console.print(
        f"kept {st.kept}; branches: "
        + (", ".join(f"{k} {v}" for k, v in st.by_branch.items()) or "-")
    )
    if st.failures:
        err_console.print("failures: " + ", ".join(f"{k} {v}" for k, v in st.failures.items()))
    if st.decisions_per_min is not None:
        eta = f", ETA {st.eta_s / 60:.1f} min" if st.eta_s is not None else ""
        err_console.print(f"throughput {st.decisions_per_min:.1f} samples/min{eta}")
    if st.error:
        err_console.print(f"[red]error: {st.error}[/]")
