"""`srt run` and `srt status`: drive the pipeline and read a run's state back."""

from __future__ import annotations

import shlex
import signal
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

import click
from rich.console import RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from srt_local import paths
from srt_local.commands.common import (
    UserError,
    cell,
    counted,
    db_option,
    echo_json,
    err_console,
    json_option,
    open_for_reading,
    out_console,
    report_error,
    say,
)
from srt_local.commands.executor_opts import executor_options, ray_settings
from srt_local.config import ModelsConfig, load_models
from srt_local.errors import SrtError
from srt_local.executors import RaySettings, ray_scorer_factory
from srt_local.pipeline import (
    RunOptions,
    RunProgress,
    RunSummary,
    prepare_run,
    run_pipeline,
)
from srt_local.run.vocabulary import RunStatus as RunState
from srt_local.run_owner import shown_status
from srt_local.run_status import EMBEDDED_HOST, RunStatus, latest_run_id, list_runs, run_status
from srt_local.store import Store

# `srt run`'s exit codes (documented in its --help and the README).
EXIT_DONE = 0
EXIT_INCOMPLETE = 3  # some samples are left undecided (teacher errors): run again to retry them
EXIT_RUN_FAILED = 4  # the run stopped on an error, or every sample met teacher errors
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM: paused, resumable


class _RunProgress(Progress):
    """The stage bars, then the rates as a line of text: a bar of unknown length never moves."""

    rates = ""

    def stop(self) -> None:
        if not self.tasks and not self.console.is_interactive:
            # Rich ends a non-terminal display with an empty line: none for a run that failed
            # before its first stage, so its error is the first line.
            self.live.stop()
            return
        super().stop()

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        if self.rates:
            yield Text(self.rates, style="dim")


def execute(
    store: Store,
    options: RunOptions,
    quiet: bool = False,
    stop: threading.Event | None = None,
    config: ModelsConfig | None = None,
    run_id: int | None = None,
    ray: RaySettings | None = None,
) -> RunSummary:
    """Prepare (or find) the run for these options and drive it to its end with a progress display.

    With `ray`, the student scores on Ray actors; the teacher and the store stay here."""
    config = config or load_models()
    if run_id is None:
        run_id = prepare_run(store, options, config)
    progress = _RunProgress(
        TextColumn("{task.description:<24}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]}", markup=False, style="red"),
        TimeElapsedColumn(),
        console=err_console,
        disable=quiet,
    )
    tasks: dict[str, TaskID] = {}

    def show(p: RunProgress) -> None:
        for stage in p.stages:
            if stage.name not in tasks:
                tasks[stage.name] = progress.add_task(stage.name, total=stage.total, failed="")
            failed = ", ".join(f"{k}: {v}" for k, v in stage.failed.items())
            progress.update(tasks[stage.name], completed=stage.done, failed=failed)
        eta = f"ETA {p.eta_s:.0f}s" if p.eta_s is not None else "ETA -"
        progress.rates = (
            f"{p.tokens_per_s:,.0f} student tok/s  {p.calls_per_s:.2f} teacher calls/s  {eta}"
        )
        progress.refresh()

    def log(message: str) -> None:
        progress.console.print(cell(message), style="dim")

    scorer_factory = ray_scorer_factory(ray, config, store, log) if ray is not None else None
    with progress:
        summary = run_pipeline(
            store,
            run_id,
            config,
            progress=show,
            log=log,
            stop=stop,
            scorer_factory=scorer_factory,
        )
    return summary


def passed_unemitted(store: Store, run_id: int) -> int:
    """Samples that passed both thresholds but were left out because their response was not
    reflected (branches Q and ori); `--emit-unreflected` keeps them."""
    rows = store.query(
        "SELECT count(*) FROM decisions WHERE run_id = ? AND passes AND NOT emitted "
        "AND override IS NULL",
        [run_id],
    )
    return int(rows[0][0])


def kept_line(kept: int, rejected: int, unemitted: int) -> str:
    """ "kept K, rejected R", saying how many of R passed and which flag keeps them."""
    line = f"kept {kept}, rejected {rejected}"
    if unemitted:
        line += (
            f" ({unemitted} passed with their response unchanged, the reflected one not kept; "
            "`--emit-unreflected` keeps them)"
        )
    return line


def print_summary(summary: RunSummary, store: Store) -> None:
    head = Text.assemble(
        f"run {summary.run_id}: ",
        (summary.status, "bold"),
        f" in {summary.elapsed_s:.0f}s, teacher ",
        cell(summary.teacher),
        # This execution's calls; `srt status` counts every call the run's samples have.
        f", {counted(summary.teacher_calls, 'teacher call')} this time",
    )
    err_console.print(head)
    say(kept_line(summary.kept, summary.rejected, passed_unemitted(store, summary.run_id)))
    branches = sorted(summary.by_branch)
    table = Table("kept", "rejected", *[f"branch {b}" for b in branches])
    table.add_row(
        str(summary.kept),
        str(summary.rejected),
        *[str(summary.by_branch[b]) for b in branches],
    )
    err_console.print(table)
    if summary.failures:
        say("failures: " + ", ".join(f"{k}: {v}" for k, v in summary.failures.items()))
    if summary.status == RunState.INCOMPLETE:
        say("some samples met teacher errors; run the same command again to retry them", "yellow")
    say(f"store: {store.path}")


def _resume_command(options: RunOptions, db_path: Path | None) -> str:
    words = ["srt", "run", options.dataset]
    if options.teacher != "auto":
        words += ["--teacher", options.teacher]
    if options.student:
        words += ["--student", options.student]
    if options.limit:
        words += ["--limit", str(options.limit)]
    if options.concurrency:
        words += ["--concurrency", str(options.concurrency)]
    if options.emit_unreflected:
        words.append("--emit-unreflected")
    if options.full_grid:
        words.append("--full-grid")
    if db_path is not None:
        words += ["--db", str(db_path)]
    return shlex.join(words)


def _say_interrupted(store: Store, run_id: int, options: RunOptions, db_path: Path | None) -> None:
    st = run_status(store, run_id)
    decided = st.stages.get("decision", 0)
    say(
        f"interrupted: run {run_id} is paused; {decided} of {st.samples} samples are decided and "
        f"stored ({st.kept} kept), with every teacher reply and score made so far. "
        f"Resume with: {_resume_command(options, db_path)}",
        "yellow",
    )


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C and SIGTERM ask the run to pause (it stops at once and keeps what is stored); a
    second one stops without waiting."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        say("stopping: the run pauses now (again to stop at once)", "yellow")

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


@click.command(
    epilog="\b\nExit codes:\n"
    "  0    done: every sample is decided\n"
    "  3    incomplete: some samples met teacher errors; the same command retries them\n"
    "  4    failed: the run stopped on an error, or every sample met teacher errors\n"
    "  130  interrupted (Ctrl-C or SIGTERM): paused; the same command resumes it\n"
    "  2    the command itself was wrong (unknown dataset, teacher or student)"
)
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
@executor_options
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
    executor: str,
    ray_address: str | None,
    ray_node_ip: str | None,
    workers: int | None,
    profile: str,
    prompt_set: str | None,
    db_path: Path | None,
) -> None:
    """Run Selective Reflection-Tuning on an imported DATASET; the same command again resumes.

    Stage 1 reflects each instruction and keeps it if the student's IFD rises; stage 2 reflects
    the chosen branch's response and keeps it if r-IFD falls; kept samples need IFD < 1 and
    r-IFD < 1. Ctrl-C (or SIGTERM) pauses cleanly: what was stored is kept, and the command says
    how to resume. The run's id is printed on stdout as soon as the run exists (a wrong command
    creates none); progress and the summary on stderr.
    """
    config = load_models()
    ray = ray_settings(config, executor, ray_address, ray_node_ip, workers)
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
    path = db_path or paths.default_db_path()
    if not path.exists():
        # Nothing to run on: say so without creating an empty store.
        raise UserError(
            f"no dataset named {dataset!r}: there is no store at {path} yet "
            "(`srt import FILE` or `srt demo` makes one)"
        )
    with Store.open(db_path) as store:
        run_id = prepare_run(store, options, config)  # a bad dataset/teacher/student: exit 2
        # The result, printed at once: a run killed outright (kill -9) has still said its id.
        click.echo(run_id)
        stop = threading.Event()
        try:
            with _stop_on_signals(stop):
                summary = execute(store, options, stop=stop, config=config, run_id=run_id, ray=ray)
        except KeyboardInterrupt:
            _say_interrupted(store, run_id, options, db_path)
            raise SystemExit(EXIT_INTERRUPTED) from None
        except SrtError as exc:
            # A failed run, or one paused on a lasting server error: both say what to do.
            message = str(exc)
            report_error(
                message if message.startswith("run ") else f"run {run_id} failed: {message}"
            )
            raise SystemExit(EXIT_RUN_FAILED) from None
        if summary.status == RunState.PAUSED:
            _say_interrupted(store, run_id, options, db_path)
            raise SystemExit(EXIT_INTERRUPTED)
        print_summary(summary, store)
        if summary.status == RunState.INCOMPLETE:
            if summary.kept + summary.rejected == 0:
                report_error(
                    f"run {run_id}: every sample met teacher errors and none was decided; check "
                    "the teacher (`srt models`), then run the same command again"
                )
                raise SystemExit(EXIT_RUN_FAILED)
            raise SystemExit(EXIT_INCOMPLETE)


def _status_dict(st: RunStatus, shown: str, unemitted: int, snapshot: bool) -> dict[str, Any]:
    return {
        **asdict(st),
        "rejected": st.stages.get("decision", 0) - st.kept,  # as the text says it
        "status": shown,
        "stored_status": st.status,
        "passed_unreflected": unemitted,
        "snapshot": snapshot,
    }


@click.command()
@click.argument("run_id", type=int, required=False)
@db_option
@json_option
def status(run_id: int | None, db_path: Path | None, as_json: bool) -> None:
    """Per-stage counts, failures by kind, throughput and ETA of RUN (default: the latest).

    Works while a run (or the TUI) holds the store: it then reads a snapshot taken now, and says
    so on stderr. A run whose process is gone (killed) shows as interrupted.
    """
    store = open_for_reading(db_path)
    snapshot = store.snapshot_dir is not None
    with store:
        run_id = run_id if run_id is not None else latest_run_id(store)
        if run_id is None:
            raise UserError(f"no runs in {db_path or store.path} yet: `srt run DATASET` starts one")
        try:
            st = run_status(store, run_id)
        except LookupError:
            runs = ", ".join(str(r["run_id"]) for r in list_runs(store)) or "none"
            raise UserError(f"no run {run_id} (runs: {runs})") from None
        row = store.query_dicts("SELECT * FROM runs WHERE run_id = ?", [run_id])[0]
        shown = shown_status(row, store_is_held=snapshot)
        unemitted = passed_unemitted(store, run_id)
    if as_json:
        echo_json(_status_dict(st, shown, unemitted, snapshot))
        return
    title = Text(f"run {st.run_id} on ") + cell(st.dataset) + Text(f": {shown}")
    table = Table(title=title, title_justify="left")
    table.add_column("stage")
    table.add_column("done", justify="right")
    table.add_column("of", justify="right")
    for name, done in st.stages.items():
        table.add_row(cell(name), str(done), str(st.samples))
    out = out_console
    out.print(table)
    # The lines below stay whole when piped (a Console off a terminal is 80 columns wide).
    out.print(
        cell(
            f"teacher {st.teacher}, student {st.student}; "
            f"{counted(st.teacher_calls, 'teacher call')}"
        ),
        soft_wrap=True,
    )
    rejected = st.stages.get("decision", 0) - st.kept
    out.print(cell(kept_line(st.kept, rejected, unemitted)), soft_wrap=True)
    out.print(
        cell("branches: " + (", ".join(f"{k} {v}" for k, v in st.by_branch.items()) or "-")),
        soft_wrap=True,
    )
    if any(h.host != EMBEDDED_HOST for h in st.hosts):
        out.print(cell("teacher hosts:"), soft_wrap=True)
        for host in st.hosts:
            out.print(cell(f"  {host.line()}"), soft_wrap=True)
    if st.failures:
        out.print(
            cell("failures: " + ", ".join(f"{k} {v}" for k, v in st.failures.items())),
            soft_wrap=True,
        )
    if st.decisions_per_min is not None:
        eta = (
            f", ETA {st.eta_s / 60:.1f} min" if st.eta_s is not None and shown == "running" else ""
        )
        out.print(cell(f"throughput {st.decisions_per_min:.1f} samples/min{eta}"), soft_wrap=True)
    if shown == "interrupted":
        out.print(
            Text(
                "the process running it is gone (killed?); the same `srt run` command resumes it",
                style="yellow",
            )
        )
    if st.error:
        out.print(Text.assemble(("error: ", "red"), cell(st.error)), soft_wrap=True)
