"""The SQL tab's editor: Textual's code editor (tree-sitter SQL highlighting when the grammar is
installed), completion of the store's tables and columns, and a history of the queries run.

Completion: typing two letters of a name (or `table.`) offers the names that start so; up and down
choose, tab or enter takes one, escape closes the list; tab or ctrl+space asks for it at any time.
History: ctrl+up and ctrl+down walk the queries run (newest first), back to the draft.
The editor posts what to show (`Completions`) up to its pane, which draws the list.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from textual import events
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import TextArea

WORD_BEFORE_CURSOR = re.compile(r"(?:([A-Za-z_][\w]*)\.)?([A-Za-z_][\w]*)?$")
PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_]*")
AUTO_AFTER = 2  # letters typed before the list opens by itself


def quoted(name: str) -> str:
    """`name` as an SQL identifier: double-quoted unless it is a plain lower-case name."""
    return name if PLAIN_NAME.fullmatch(name) else '"' + name.replace('"', '""') + '"'


def candidates(schema: Mapping[str, Sequence[str]], table: str | None, prefix: str) -> list[str]:
    """Names that start with `prefix` (any case): the columns of `table` when qualified, else the
    tables and then every column, each once, in order."""
    low = prefix.lower()
    if table is not None:
        names: list[str] = list(schema.get(table, ()))
    else:
        names = list(schema)
        names += [c for columns in schema.values() for c in columns]
    seen: set[str] = set()
    found = []
    for name in names:
        if name.lower().startswith(low) and name not in seen and name != prefix:
            seen.add(name)
            found.append(name)
    return found


class SqlEditor(TextArea):
    """A TextArea for SQL with table/column completion and query history."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+space", "complete", "Complete a name", show=False),
        Binding("ctrl+up", "history(1)", "Older query", show=False),
        Binding("ctrl+down", "history(-1)", "Newer query", show=False),
    ]

    @dataclass
    class Completions(Message):
        """The names offered now (empty: close the list) and the one chosen."""

        editor: SqlEditor
        names: list[str]
        chosen: int

    def __init__(self, text: str = "", *, id: str | None = None) -> None:
        from textual._tree_sitter import get_language

        # Highlighting needs tree-sitter's SQL grammar; without it the editor is plain text.
        language = "sql" if get_language("sql") is not None else None
        super().__init__(
            text,
            language=language,
            theme="monokai",
            soft_wrap=True,
            tab_behavior="indent",
            show_line_numbers=True,
            id=id,
        )
        self.schema: dict[str, list[str]] = {}
        self.names: list[str] = []
        self.chosen = 0
        self._word = ""
        self.queries: list[str] = []
        """Queries run, oldest first."""
        self._back = 0  # how far back in the history the editor is; 0: the draft
        self._draft = ""

    # ------------------------------------------------------------ completion

    def _word_before_cursor(self) -> tuple[str | None, str]:
        row, column = self.cursor_location
        line = self.document[row][:column]
        match = WORD_BEFORE_CURSOR.search(line)
        if match is None:
            return None, ""
        return match.group(1), match.group(2) or ""

    def _offer(self, names: list[str], word: str) -> None:
        self.names, self.chosen, self._word = names, 0, word
        self.post_message(self.Completions(self, names, 0))

    def close_completions(self) -> None:
        if self.names:
            self._offer([], "")

    def refresh_completions(self, force: bool = False) -> bool:
        """Offer the names that complete the word before the cursor; whether any were."""
        table, word = self._word_before_cursor()
        if table is not None and table not in self.schema:
            table_names = {t.lower(): t for t in self.schema}
            table = table_names.get(table.lower(), table)
        if not force and table is None and len(word) < AUTO_AFTER:
            self.close_completions()
            return False
        names = candidates(self.schema, table, word)
        if names:
            self._offer(names, word)
            return True
        self.close_completions()
        return False

    def accept(self) -> None:
        """Put the chosen name in place of the word before the cursor."""
        if not self.names:
            return
        name = quoted(self.names[self.chosen])
        row, column = self.cursor_location
        self.replace(name, (row, column - len(self._word)), (row, column))
        self.close_completions()

    def action_complete(self) -> None:
        if not self.refresh_completions(force=True):
            self.app.bell()

    async def _on_key(self, event: events.Key) -> None:
        key = event.key
        if self.names and key in ("up", "down", "tab", "enter", "escape"):
            event.stop()
            event.prevent_default()
            if key in ("up", "down"):
                step = 1 if key == "down" else -1
                self.chosen = (self.chosen + step) % len(self.names)
                self.post_message(self.Completions(self, self.names, self.chosen))
            elif key == "escape":
                self.close_completions()
            else:
                self.accept()
            return
        if key == "tab" and not self.read_only and self.refresh_completions(force=True):
            event.stop()
            event.prevent_default()
            if len(self.names) == 1:
                self.accept()
            return
        await super()._on_key(event)
        if event.is_printable:
            self.refresh_completions()
        elif key not in ("shift", "ctrl"):
            self.close_completions()

    def on_blur(self, _event: events.Blur) -> None:
        self.close_completions()

    # ------------------------------------------------------------ history

    def remember(self, sql: str) -> None:
        """Add a query that was run to the history (not twice in a row); back to the draft."""
        sql = sql.strip()
        if sql and (not self.queries or self.queries[-1] != sql):
            self.queries.append(sql)
        self._back = 0

    def action_history(self, step: int) -> None:
        """Show an older (step 1) or newer (step -1) query from the history."""
        back = min(max(self._back + step, 0), len(self.queries))
        if back == self._back:
            self.app.bell()
            return
        if self._back == 0:
            self._draft = self.text
        self._back = back
        self.text = self._draft if back == 0 else self.queries[-back]
        self.move_cursor(self.document.end)
        self.close_completions()
