"""A whole cell in a dialog, as plain text (JSON for nested values), with its control characters
made visible; c copies the stored value."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static, TextArea

from srt_local.textsafe import visible


def cell_text(value: Any) -> str:
    """A stored value as text: strings as they are, NULL as NULL, anything else as JSON."""
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


class CellView(ModalScreen[None]):
    """The column's name, the value's size, and the value in a read-only text area."""

    DEFAULT_CSS = """
    CellView {
        align: center middle;
    }
    CellView > Vertical {
        width: 90%;
        height: 80%;
        border: thick $primary;
        background: $surface;
        padding: 0 1;
    }
    CellView > Vertical > .title {
        height: 1;
        color: $text-muted;
    }
    CellView > Vertical > TextArea {
        height: 1fr;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Close"),
        Binding("c", "copy", "Copy the value"),
    ]

    def __init__(self, column: str, value: Any) -> None:
        super().__init__()
        self.column = column
        self.value = value

    def compose(self) -> ComposeResult:
        text = cell_text(self.value)
        with Vertical():
            yield Static(
                visible(f"{self.column} · {len(text):,} characters · c copies · escape closes"),
                classes="title",
                markup=False,
            )
            yield TextArea(visible(text), read_only=True, soft_wrap=True, id="cell-text")

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(cell_text(self.value))
        self.notify(f"copied {self.column}")

    def action_close(self) -> None:
        self.dismiss(None)
