"""An Input for file paths that completes them as you type (→ or End accepts the suggestion)."""

from __future__ import annotations

import os

from textual.suggester import Suggester
from textual.widgets import Input


class PathSuggester(Suggester):
    """Suggests the first file or folder (folders end in /) that starts with what is typed; `~`
    is the home folder. Hidden entries only when the typed name starts with a dot."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        head, prefix = os.path.split(os.path.expanduser(value))
        try:
            entries = sorted(os.scandir(head or "."), key=lambda e: e.name)
        except OSError:
            return None
        for entry in entries:
            name = entry.name
            if not name.startswith(prefix) or (name.startswith(".") and not prefix.startswith(".")):
                continue
            try:
                folder = entry.is_dir()
            except OSError:
                folder = False
            rest = name[len(prefix) :] + ("/" if folder else "")
            if rest:
                return value + rest
        return None


class PathInput(Input):
    """A compact Input with path completion."""

    def __init__(self, *, placeholder: str = "", id: str | None = None) -> None:
        super().__init__(placeholder=placeholder, suggester=PathSuggester(), compact=True, id=id)
