"""The layers of pyproject's [tool.importlinter] hold, and a forbidden import breaks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    for package in ("srt_local", "tui"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_contracts_hold() -> None:
    out = lint_imports(REPO)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("srt_local/store.py", "import textual", "The engine never imports the screen"),
        ("srt_local/exporter.py", "import tui.app", "The engine never imports the screen"),
        (
            "srt_local/scoring.py",
            "from srt_local.commands import common",
            "The core never imports the command line",
        ),
        (
            "srt_local/parsing.py",
            "from srt_local.teachers import base",
            "Parsing a reply needs no teacher",
        ),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    copy: Path, module: str, line: str, contract: str
) -> None:
    target = copy / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    out = lint_imports(copy)
    assert out.returncode != 0
    assert f"{contract} BROKEN" in out.stdout
