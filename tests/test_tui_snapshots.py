"""SVG snapshots of every tab at 80x24 on fixed data and fixed machine facts (tests.tui_support.
FixedMachine: no GPU, no Ollama, no installed package sizes, no timestamps, no machine paths).

Update them after a deliberate change with: .venv/bin/pytest tests/test_tui_snapshots.py
--snapshot-update, and look at the SVGs in tests/__snapshots__/ before committing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.worker import WorkerState

from srt_local.store import Store
from tests.tui_support import FixedMachine
from tui.app import SrtApp

SIZE = (80, 24)


@pytest.fixture
def store(store_run: tuple[Store, int]) -> Store:
    return store_run[0]


async def quiet(pilot: Pilot[Any]) -> None:
    """Until no worker runs, twice in a row; then let the screen catch up."""
    calm = 0
    while calm < 3:
        busy = any(w.state in (WorkerState.PENDING, WorkerState.RUNNING) for w in pilot.app.workers)
        calm = 0 if busy else calm + 1
        await pilot.pause(0.05)


def keys_then_quiet(*keys: str) -> Callable[[Pilot[Any]], Any]:
    async def run_before(pilot: Pilot[Any]) -> None:
        await quiet(pilot)
        for key in keys:
            await pilot.press(key)
            await quiet(pilot)

    return run_before


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("datasets", ()),
        ("models", ("2",)),
        ("run", ("3",)),
        ("browse", ("4", "down")),
        ("distributions", ("5",)),
        ("sql", ("6", "ctrl+r")),
        ("export", ("7",)),
    ],
)
def test_tab_snapshot(
    name: str, keys: tuple[str, ...], store: Store, snap_compare: Callable[..., bool]
) -> None:
    app = SrtApp(store, theme="dark", machine=FixedMachine())
    assert snap_compare(app, terminal_size=SIZE, run_before=keys_then_quiet(*keys))


def test_browse_in_the_light_theme(store: Store, snap_compare: Callable[..., bool]) -> None:
    app = SrtApp(store, theme="light", machine=FixedMachine())
    assert snap_compare(app, terminal_size=SIZE, run_before=keys_then_quiet("4"))
