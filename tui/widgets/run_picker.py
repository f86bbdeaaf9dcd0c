"""A compact Select of the store's runs that follows, and sets, the app's current run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from textual.widgets import Select


def run_label(run: dict[str, Any]) -> str:
    """One line naming a run: id, dataset, status and how many samples it has decided."""
    return f"run {run['run_id']} · {run['dataset']} · {run['status']}"


class RunPicker(Select[int]):
    """Choose a run. Changing it sets `app.current_run`; other pickers follow that."""

    DEFAULT_CSS = """
    RunPicker {
        width: 1fr;
    }
    """

    def __init__(self, id: str | None = None) -> None:
        super().__init__([], prompt="no runs yet", allow_blank=True, compact=True, id=id)
        self._ids: list[int] = []

    def on_mount(self) -> None:
        self.watch(self.app, "current_run", self._follow, init=False)

    def _follow(self, run_id: int | None) -> None:
        if run_id is not None and run_id != self.value and run_id in self._ids:
            self.value = run_id

    def load(self, runs: Sequence[dict[str, Any]]) -> None:
        """Offer these runs and select the app's current run (else the latest)."""
        current: int | None = getattr(self.app, "current_run", None)
        self.set_options([(run_label(r), int(r["run_id"])) for r in runs])
        ids = self._ids = [int(r["run_id"]) for r in runs]
        if not ids:
            return
        chosen = current if current in ids else ids[-1]
        self.value = chosen
        if current != chosen:
            self.app.current_run = chosen  # type: ignore[attr-defined]

    def on_select_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, int):
            self.app.current_run = event.value  # type: ignore[attr-defined]
