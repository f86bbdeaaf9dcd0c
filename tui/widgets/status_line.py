"""The one-line (up to four) status under a form: what happened, coloured by how it went."""

from __future__ import annotations

from typing import Literal

from textual.widgets import Static

from srt_local.textsafe import visible

Kind = Literal["", "ok", "warning", "error"]


class StatusLine(Static):
    """Plain text with a kind. It often quotes stored data or paths: never read as markup, its
    control characters made visible."""

    def __init__(self, text: str = "", *, id: str | None = None) -> None:
        super().__init__(visible(text), id=id, classes="status", markup=False)
        self.kind: Kind = ""

    def set(self, text: str, kind: Kind = "") -> None:
        """Show `text`; `kind` colours it (ok, warning, error) or leaves it muted ("")."""
        self.update(visible(text))
        self.kind = kind
        self.set_classes(f"status {kind}".strip())
