"""The one-line (up to four) status under a form: what happened, coloured by how it went."""

from __future__ import annotations

from typing import Literal

from textual.widgets import Static

Kind = Literal["", "ok", "warning", "error"]


class StatusLine(Static):
    """Plain text (never read as markup: it often quotes stored data or paths) with a kind."""

    def __init__(self, text: str = "", *, id: str | None = None) -> None:
        super().__init__(text, id=id, classes="status", markup=False)
        self.kind: Kind = ""

    def set(self, text: str, kind: Kind = "") -> None:
        """Show `text`; `kind` colours it (ok, warning, error) or leaves it muted ("")."""
        self.update(text)
        self.kind = kind
        self.set_classes(f"status {kind}".strip())
