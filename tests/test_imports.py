"""The engine stays importable without the screen or the model runtime (STYLE.md)."""

from __future__ import annotations

import subprocess
import sys

ENGINE_MODULES = [
    "srt_local",
    "srt_local.config",
    "srt_local.store",
    "srt_local.paths",
    "srt_local.model_files",
]


def test_import_srt_local_pulls_in_neither_textual_nor_llama_cpp() -> None:
    code = (
        "import sys, importlib\n"
        f"for m in {ENGINE_MODULES!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'llama_cpp', 'tui'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
