"""Hostile strings: text that a terminal, Rich, JSON or DuckDB could misread, shared by the tests.

Every one is data and must come back exactly (JSON, the store, exports) or visibly (the terminal).
"""

from __future__ import annotations

ESC = "\x1b"

# name -> text. Each also fits in an instruction, an input, an answer and a dataset name.
HOSTILE: dict[str, str] = {
    "markup_close": "[/INST] wraps the prompt",
    "markup_style": "[bold red]not bold[/] and [link=http://x]no link[/link]",
    "index": "print(my_list[i]) prints one item",
    "emoji_code": "thumbs :x: and :smile: stay words",
    "ansi": f"red {ESC}[31mRED{ESC}[0m and a title {ESC}]0;pwned{ESC}\\ and clear {ESC}[2J",
    "c1_csi": "a C1 control \x9b31m between words",
    "rtl": "left \u202eright-to-left override\u202c and Arabic \u0645\u0631\u062d\u0628\u0627",
    "nul_and_controls": "a NUL \x00 a bell \x07 a backspace \x08 and DEL \x7f",
    "carriage_return": "shown\rhidden",
    "long_line": "long " + "x" * 5000 + " end",
}

# Not storable by DuckDB (not valid UTF-8); i13-scale rejects such records at import, and a
# teacher reply holding one is a failure of that sample.
LONE_SURROGATE = "broken \ud800 surrogate"

# What must be visible in a terminal, for each string whose control characters are not printable.
# (visible() shows C0 controls as Unicode control pictures and the rest as escapes.)
VISIBLE_MARKS = {
    "ansi": "\u241b[31m",  # ESC as ␛
    "c1_csi": "\\x9b",
    "rtl": "\\u202e",
    "nul_and_controls": "\u2400",  # NUL as ␀
    "carriage_return": "\u240d",  # CR as ␍
}

# Characters a terminal acts on; none may reach it raw.
RAW_CONTROLS = ("\x1b", "\x9b", "\x00", "\x07", "\x08", "\x7f", "\r", "\u202e", "\ud800")


def pairs() -> list[dict[str, str]]:
    """One alpaca record per hostile string: the string in every field."""
    return [
        {"instruction": f"Explain {text}", "input": f"context: {text}", "output": f"It is {text}"}
        for text in HOSTILE.values()
    ]
