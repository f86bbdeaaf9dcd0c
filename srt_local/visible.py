"""Stored text shown on a terminal: control characters made visible, so a sample's ANSI escapes
(`\\x1b[2J` clears the screen) or carriage returns are shown, never obeyed."""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, and the C1 controls (some terminals obey \x9b as ESC [).
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_PICTURES = {c: chr(0x2400 + c) for c in (*range(0x09), *range(0x0B, 0x20))}
_PICTURES[0x7F] = "\u2421"  # SYMBOL FOR DELETE
_PICTURES.update({c: "\ufffd" for c in range(0x80, 0xA0)})


def visible(text: str) -> str:
    """`text` with each control character replaced by its Unicode control picture (ESC: ␛)."""
    return text.translate(_PICTURES) if CONTROL.search(text) else text
