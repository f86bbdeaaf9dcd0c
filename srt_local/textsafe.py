"""Stored text, shown exactly: every character a terminal would act on is made visible.

Datasets and teacher replies are data. A terminal acts on escape sequences (ESC starts one; C1's
CSI is another), backspace and carriage return rewrite what was shown, bidi overrides reorder it,
and a lone surrogate cannot even be encoded for output. `visible()` replaces each such character
with a visible stand-in, so what a user sees is what the store holds. Markup is the other half:
screens never read stored text as Rich markup (they pass it as plain text).
"""

from __future__ import annotations

import re

# C0 controls (but tab and newline, which lay text out), DEL, C1 controls, bidi embeddings,
# overrides and isolates, and lone surrogates.
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_UNSAFE_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _stand_in(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if code < 0x20:
        # Unicode's control pictures: NUL is ␀, ESC is ␛, ...
        return chr(0x2400 + code)
    if code == 0x7F:
        return "\u2421"  # ␡
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def visible(text: str, *, one_line: bool = False) -> str:
    """`text` with control characters, bidi controls and lone surrogates shown as visible
    stand-ins (ESC as ␛, NUL as ␀, CSI as \\x9b, U+202E as \\u202e, a lone surrogate as
    \\ud800). Tabs and newlines are kept, unless `one_line`, where they become ␉ and ␊."""
    pattern = _UNSAFE_ONE_LINE if one_line else UNSAFE
    return pattern.sub(_stand_in, text)
