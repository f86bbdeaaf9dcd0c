"""The help screen (? or F1): the keys of the tab in use, then the keys that work everywhere."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


def key_lines(keys: Iterable[tuple[str, str]]) -> Text:
    """Aligned "key  what it does" lines, plain text."""
    pairs = list(keys)
    width = max((len(k) for k, _ in pairs), default=0)
    text = Text()
    for key, description in pairs:
        text.append(f"  {key.ljust(width)}  ", style="bold")
        text.append(f"{description}\n")
    return text


class HelpScreen(ModalScreen[None]):
    """Keys for `title`'s tab and the app's; any of escape, q, ? or F1 closes it."""

    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
    }
    HelpScreen > VerticalScroll {
        width: 76;
        max-width: 95%;
        height: auto;
        max-height: 90%;
        border: thick $primary;
        background: $surface;
        padding: 0 1;
    }
    HelpScreen .heading {
        text-style: bold;
        color: $accent;
        margin-top: 1;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark,f1", "close", "Close", show=False),
    ]

    def __init__(
        self,
        title: str,
        tab_keys: Sequence[tuple[str, str]],
        app_keys: Sequence[tuple[str, str]],
        notes: str = "",
    ) -> None:
        super().__init__()
        self.title_text = title
        self.tab_keys = tab_keys
        self.app_keys = app_keys
        self.notes = notes

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(f"Keys of the {self.title_text} tab", classes="heading", markup=False)
            yield Static(key_lines(self.tab_keys) if self.tab_keys else "  none of its own")
            if self.notes:
                yield Static(self.notes, markup=False)
            yield Static("Everywhere", classes="heading", markup=False)
            yield Static(key_lines(self.app_keys))
            yield Static(
                "Keys typed in a text field go into it: escape leaves the field. "
                "escape, q, ? or F1 closes this help.",
                markup=False,
                classes="heading",
            )

    def action_close(self) -> None:
        self.dismiss(None)
