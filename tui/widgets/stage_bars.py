"""One progress bar per pipeline stage, with its counts and its failures by kind."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import ProgressBar, Static

from srt_local.pipeline import StageProgress


def failures_text(failed: dict[str, int]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in sorted(failed.items()))


class StageRow(Horizontal):
    """name · bar · done/total · failures"""

    DEFAULT_CSS = """
    StageRow {
        height: 1;
    }
    StageRow > .name {
        width: 23;
        color: $text-muted;
    }
    StageRow > ProgressBar {
        width: 1fr;
    }
    StageRow > ProgressBar > Bar {
        width: 1fr;
    }
    StageRow > .counts {
        width: auto;
        min-width: 11;
        padding-left: 1;
    }
    StageRow > .failed {
        width: auto;
        max-width: 40%;
        color: $error;
        padding-left: 1;
    }
    """

    def __init__(self, stage: StageProgress) -> None:
        super().__init__()
        self.stage = stage

    def compose(self) -> ComposeResult:
        yield Static(self.stage.name, classes="name", markup=False)
        yield ProgressBar(total=None, show_eta=False, show_percentage=False)
        yield Static("", classes="counts", markup=False)
        yield Static("", classes="failed", markup=False)

    def on_mount(self) -> None:
        self.set(self.stage)

    def set(self, stage: StageProgress) -> None:
        self.stage = stage
        bar = self.query_one(ProgressBar)
        bar.update(total=max(stage.total, 1), progress=min(stage.done, stage.total))
        self.query_one(".counts", Static).update(f"{stage.done:,}/{stage.total:,}")
        self.query_one(".failed", Static).update(failures_text(stage.failed))


class StageBars(Vertical):
    """The stages of a run, in pipeline order; rows are added or removed to match."""

    DEFAULT_CSS = """
    StageBars {
        height: auto;
    }
    """

    async def show(self, stages: Sequence[StageProgress]) -> None:
        rows = list(self.query(StageRow))
        if [r.stage.name for r in rows] != [s.name for s in stages]:
            await self.remove_children()
            await self.mount_all([StageRow(s) for s in stages])
            return
        for row, stage in zip(rows, stages, strict=True):
            row.set(stage)
