"""`srt demo`: the whole method on a small shipped dataset, with whatever teacher is at hand."""

from __future__ import annotations

from pathlib import Path

import click

from srt_local.commands.common import db_option, say
from srt_local.commands.run_cmd import execute, print_summary
from srt_local.importer import DEMO_NAME, demo_file
from srt_local.pipeline import RunOptions
from srt_local.store import Store

QUERIES = [
    (
        "What the student decided, by branch",
        "SELECT branch, emitted, count(*) AS n FROM decisions GROUP BY ALL ORDER BY ALL",
    ),
    (
        "The kept samples with their scores",
        "SELECT sample_id, branch, round(ifd_ppl, 3) AS ifd, round(rifd_ppl, 3) AS rifd, "
        "left(instruction, 60) AS instruction FROM selection ORDER BY ifd DESC",
    ),
    (
        "Every teacher reply that did not parse",
        "SELECT call_id, stage, outcome, left(raw_reply, 80) AS reply FROM teacher_calls "
        "WHERE outcome <> 'ok'",
    ),
]


@click.command()
@click.option(
    "--teacher",
    default="auto",
    show_default=True,
    help="auto uses Ollama when it answers, else the embedded teacher.",
)
@click.option("--student", default=None, help="Default: the models.toml default student.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N samples.")
@db_option
def demo(teacher: str, student: str | None, limit: int | None, db_path: Path | None) -> None:
    """Import the shipped demo dataset, run the whole pipeline on it and show where it all went."""
    from srt_local.importer import import_dataset

    with Store.open(db_path) as store:
        exists = store.query("SELECT 1 FROM datasets WHERE name = ?", [DEMO_NAME])
        if not exists:
            report = import_dataset(store, demo_file(), name=DEMO_NAME)
            say(f"imported {report}")
        summary = execute(
            store, RunOptions(dataset=DEMO_NAME, teacher=teacher, student=student, limit=limit)
        )
        print_summary(summary, store)
        db = store.path
    say("\nTry these:", "bold")
    for title, query in QUERIES:
        say(f'  # {title}\n  srt sql "{query}" --db {db}\n')
    say(
        f"Export the selection: srt export {summary.run_id} --format alpaca --out kept.json --db {db}"
    )
