"""A compact Select of the store's runs. It posts the user's choice up (`RunChosen`) and follows
the current run its pane pushes down (`follow`); it never writes the app's state itself."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text
from textual.widgets import Select

from srt_local.textsafe import visible
from tui.messages import RunChosen


def run_label(run: dict[str, Any]) -> Text:
    """One line naming a run: id, dataset and status (plain text: the dataset's name is data)."""
    return Text(visible(f"run {run['run_id']} · {run['dataset']} · {run['status']}", one_line=True))


class RunPicker(Select[int]):
    """Choose a run: the choice goes up as `RunChosen`; `follow` shows the current one."""

    DEFAULT_CSS = """
    RunPicker {
        width: 1fr;
    }
    """

    def __init__(self, id: str | None = None) -> None:
        super().__init__([], prompt="no runs yet", allow_blank=True, compact=True, id=id)
        self.run_ids: list[int] = []

    def load(self, runs: Sequence[dict[str, Any]], current: int | None) -> int | None:
        """Offer these runs and show `current` (else the latest); the run shown, if any."""
        with self.prevent(Select.Changed):
            self.set_options([(run_label(r), int(r["run_id"])) for r in runs])
        self.run_ids = [int(r["run_id"]) for r in runs]
        if not self.run_ids:
            return None
        chosen = current if current in self.run_ids else self.run_ids[-1]
        self.follow(chosen)
        return chosen

    def follow(self, run_id: int | None) -> None:
        """Show `run_id` (when offered) without reporting it as a choice of the user."""
        if run_id is not None and run_id != self.value and run_id in self.run_ids:
            with self.prevent(Select.Changed):
                self.value = run_id

    def on_select_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, int):
            self.post_message(RunChosen(event.value))
