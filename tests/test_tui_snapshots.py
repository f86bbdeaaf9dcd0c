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
from textual.widgets import TextArea
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


def steady_cursors(pilot: Pilot[Any]) -> None:
    """A blinking cursor is drawn or not depending on when the screenshot is taken."""
    for field in pilot.app.query("Input, TextArea"):
        field.cursor_blink = False  # type: ignore[attr-defined]


def keys_then_quiet(*keys: str) -> Callable[[Pilot[Any]], Any]:
    async def run_before(pilot: Pilot[Any]) -> None:
        await quiet(pilot)
        for key in keys:
            await pilot.press(key)
            await quiet(pilot)
        steady_cursors(pilot)
        await pilot.pause()

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


def test_first_run_offers_the_demo_data(
    empty_store: Store, snap_compare: Callable[..., bool]
) -> None:
    app = SrtApp(empty_store, theme="dark", machine=FixedMachine())
    assert snap_compare(app, terminal_size=SIZE, run_before=keys_then_quiet())


def test_help_on_the_browse_tab(store: Store, snap_compare: Callable[..., bool]) -> None:
    app = SrtApp(store, theme="dark", machine=FixedMachine())
    assert snap_compare(app, terminal_size=SIZE, run_before=keys_then_quiet("4", "f1"))


def test_sql_completion_list(store: Store, snap_compare: Callable[..., bool]) -> None:
    async def type_a_query(pilot: Pilot[Any]) -> None:
        await keys_then_quiet("6")(pilot)
        pilot.app.query_one("#editor", TextArea).text = ""
        await pilot.press(*"SELECT * FROM s")
        await pilot.press("tab")
        await quiet(pilot)
        steady_cursors(pilot)
        await pilot.pause()

    app = SrtApp(store, theme="dark", machine=FixedMachine())
    assert snap_compare(app, terminal_size=SIZE, run_before=type_a_query)
