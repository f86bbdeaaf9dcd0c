"""`srt export`: write a run's selection as a training file and its LLaMA-Factory entry."""

from __future__ import annotations

from pathlib import Path

import click

from srt_local.commands.common import db_option, echo_json, json_option, say
from srt_local.exporter import export_run
from srt_local.formats import EXPORT_FORMATS
from srt_local.store import Store


@click.command()
@click.argument("run_id", metavar="RUN", type=int)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(EXPORT_FORMATS),
    required=True,
    help="alpaca, sharegpt and messages write .json (an array) or .jsonl as --out "
    "names it; parquet writes the alpaca columns.",
)
@click.option(
    "--top-k",
    type=int,
    default=None,
    help="Keep only the N samples with the highest IFD among IFD < 1.",
)
@click.option(
    "--top-fraction",
    type=float,
    default=None,
    help="Keep ceil(F x size of the selection) samples, by IFD as --top-k.",
)
@click.option("--with-scores", is_flag=True, help="Add the ifd_ppl and rifd_ppl fields.")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The file to write; dataset_info.json is written or updated beside it.",
)
@click.option(
    "--force", is_flag=True, help="Replace --out if it exists (never a dataset's source file)."
)
@db_option
@json_option
def export(
    run_id: int,
    fmt: str,
    top_k: int | None,
    top_fraction: float | None,
    with_scores: bool,
    out: Path,
    force: bool,
    db_path: Path | None,
    as_json: bool,
) -> None:
    """Write the selection of run RUN to --out, and a dataset_info.json entry that loads it.

    The entry (named after --out's stem) is merged into dataset_info.json beside the file, keeping
    the other entries, and printed (--json: the whole report). sharegpt and messages have no input
    field: an input follows the instruction on the next line, as LLaMA-Factory joins alpaca's.
    An existing --out is replaced only with --force; an empty selection is refused.

    Example: srt export 1 --format sharegpt --out data/kept.json
    """
    with Store.open(db_path, read_only=True) as store:
        report = export_run(
            store,
            run_id,
            fmt,
            out,
            top_k=top_k,
            top_fraction=top_fraction,
            with_scores=with_scores,
            force=force,
        )
    cut = "" if report.n_written == report.n_selected else f" (top {report.n_written} by IFD)"
    say(
        f"wrote {report.n_written} of {report.n_selected} selected samples{cut} to {report.path} "
        f"({fmt}); {'replaced' if report.replaced_entry else 'added'} entry "
        f"{report.entry_name!r} in {report.info_path}"
    )
    if as_json:
        echo_json(
            {
                "run_id": report.run_id,
                "path": str(report.path),
                "format": report.format,
                "selected": report.n_selected,
                "written": report.n_written,
                "dataset_info": str(report.info_path),
                "entry_replaced": report.replaced_entry,
                "entry": {report.entry_name: report.entry},
            }
        )
        return
    echo_json({report.entry_name: report.entry})
