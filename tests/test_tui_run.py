"""The Run tab on the real pipeline: the embedded models end to end, and a slow Ollama-protocol
teacher during which keys are still answered, the run pauses on quit, resumes, or is cancelled."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Input, Select, TabbedContent, TextArea

from srt_local.importer import import_dataset
from srt_local.store import Store
from tests.ollama_server import OllamaTestServer
from tests.tui_support import rows, settle, text, write_dataset_file
from tui.app import SrtApp
from tui.screens.run import RunLog, RunPane
from tui.widgets.arrow_table import ArrowTable
from tui.widgets.confirm import Confirm

SIZE = (100, 30)
# The UI thread shares 2 cores with the student's threads: a key is typically handled in 0.1 s;
# the bound leaves room for a loaded CI machine, and still fails a UI blocked by the run.
KEY_BOUND_S = 2.0
LATENCY_S = 1.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(tmp_path / "srt.duckdb")
    import_dataset(store, write_dataset_file(tmp_path / "tiny.json"), name="tiny")
    yield store
    store.close()


@pytest.fixture
def slow_teacher(tmp_path: Path) -> Iterator[Path]:
    """A models.toml whose 'ollama' teacher is a test server answering after LATENCY_S."""
    with OllamaTestServer(latency=LATENCY_S) as server:
        extra = tmp_path / "models.toml"
        extra.write_text(
            f'[teachers.ollama]\nbackend = "ollama"\nmodel = "{server.model}"\n'
            f'host = "{server.url}"\nconcurrency = 2\n'
        )
        yield extra


async def start_run(pilot: Pilot[Any], teacher: str, limit: str = "") -> RunPane:
    await pilot.press("3")
    await settle(pilot)
    app = pilot.app
    app.query_one("#teacher", Select).value = teacher
    app.query_one("#limit", Input).value = limit
    app.query_one("#runs-table", ArrowTable).focus_table()
    assert app.query_one("#dataset", Select).value == "tiny"
    await pilot.press("s")
    return app.query_one(RunPane)


async def until(
    pilot: Pilot[Any], condition: Callable[[], bool], timeout: float, what: str | Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, (
            f"timed out waiting for {what if isinstance(what, str) else what()}"
        )
        await pilot.pause(0.1)


async def press_live(app: SrtApp, key: str, handled: Callable[[], bool]) -> float:
    """Send a key as the terminal would and time until `handled()`. (Pilot.press waits for the
    process to go idle, which it never does while the student scores.)"""
    started = time.monotonic()
    app.post_message(events.Key(key, key if len(key) == 1 else None))
    while not handled():
        assert time.monotonic() - started < 30, f"key {key!r} was not handled"
        await asyncio.sleep(0.005)
    return time.monotonic() - started


def focus_in(app: SrtApp, pane: Widget | None) -> bool:
    return app.focused is not None and pane in app.focused.ancestors


def in_text_field(app: SrtApp) -> bool:
    return isinstance(app.focused, Input | TextArea)


def active_is(tabs: TabbedContent, tab: str) -> bool:
    return tabs.active == tab


def focus_text(app: SrtApp, tab: str) -> str:
    return f"the focus in {tab} (on {app.focused})"


def log_text(app: SrtApp) -> str:
    return "\n".join(app.query_one("#run-log", RunLog).texts)


@pytest.mark.slow
async def test_a_run_on_the_embedded_models(store: Store) -> None:
    app = SrtApp(store, theme="dark")
    async with app.run_test(size=SIZE) as pilot:
        pane = await start_run(pilot, "smollm2-135m-chat", limit="2")
        await until(pilot, lambda: pane.active_run is not None, 60, "the run to start")
        await until(pilot, lambda: not pane.running, 300, "the run to finish")
        await settle(pilot)
        assert "done" in log_text(app)
        [run] = rows(app, "#runs-table")
        assert run[1:5] == ["tiny", "smollm2-135m-chat", "gemma3-270m", "done"]
        assert run[5] == 2
        await pilot.press("4")
        await settle(pilot)
        assert len(rows(app, "#decisions")) == 2
    assert store.query("SELECT status FROM runs") == [("done",)]
    assert store.query("SELECT count(*) FROM decisions") == [(2,)]


@pytest.mark.slow
async def test_keys_are_answered_during_a_slow_run_and_quit_pauses_it_for_resuming(
    store: Store, slow_teacher: Path
) -> None:
    app = SrtApp(store, models_file=slow_teacher, theme="dark")
    async with app.run_test(size=SIZE) as pilot:
        pane = await start_run(pilot, "ollama")
        await until(pilot, lambda: "running" in text(app, "#run-stats"), 60, "progress")
        assert pane.running
        tabs = app.query_one("#tabs", TabbedContent)
        times: list[float] = []
        for key, tab in (("4", "browse"), ("6", "sql"), ("2", "models"), ("3", "run")) * 2:
            # escape leaves a text field (the SQL editor) for the tab's list or table
            times.append(await press_live(app, "escape", lambda: not in_text_field(app)))
            times.append(await press_live(app, key, partial(active_is, tabs, tab)))
            await until(
                pilot,
                lambda: focus_in(app, tabs.active_pane),
                10,
                partial(focus_text, app, tab),
            )
        assert pane.running, "the run outlasted the key presses"
        assert max(times) < KEY_BOUND_S, f"keys took {sorted(times)} s while the run went on"
        assert "in flight" in pane.waiting() or "storing the last results" in pane.waiting()
        await press_live(app, "ctrl+q", lambda: app.return_code is not None)
        assert "pausing run 1" in log_text(app)
    [(status, decided)] = store.query("SELECT status, (SELECT count(*) FROM decisions) FROM runs")
    assert status == "paused"
    assert decided < 6
    # the pause finished the samples in flight: every reply received was stored as a version
    [(replies, stored)] = store.query(
        "SELECT (SELECT count(*) FROM teacher_calls WHERE outcome = 'ok'), "
        "(SELECT count(*) FROM versions WHERE teacher_key <> '')"
    )
    assert replies == stored

    calls_before = store.query("SELECT count(*) FROM teacher_calls WHERE outcome = 'ok'")[0][0]
    app = SrtApp(store, models_file=slow_teacher, theme="dark")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(pilot)
        assert "run 1 is paused: highlight it and press u to resume" in log_text(app)
        assert rows(app, "#runs-table")[0][4] == "paused"
        pane = app.query_one(RunPane)
        app.query_one("#runs-table", ArrowTable).focus_table()
        await pilot.press("u")
        await until(pilot, lambda: pane.active_run is not None, 30, "the resume")
        await until(pilot, lambda: not pane.running, 120, "the run to finish")
        await settle(pilot)
        assert rows(app, "#runs-table")[0][4] == "done"
    assert store.query("SELECT count(*) FROM decisions") == [(6,)]
    # every stored reply was used again: each sample's Q and response were asked for once
    ok_calls = store.query("SELECT count(*) FROM teacher_calls WHERE outcome = 'ok'")[0][0]
    assert calls_before <= ok_calls <= 12
    assert store.query(
        "SELECT count(*), count(DISTINCT (sample_id, kind)) FROM versions WHERE teacher_key <> ''"
    )[0] == (ok_calls, ok_calls)


@pytest.mark.slow
async def test_cancel_asks_first_then_stops_the_run(store: Store, slow_teacher: Path) -> None:
    app = SrtApp(store, models_file=slow_teacher, theme="dark")
    async with app.run_test(size=SIZE) as pilot:
        pane = await start_run(pilot, "ollama")
        await until(pilot, lambda: pane.active_run is not None, 60, "the run to start")
        await press_live(app, "c", lambda: isinstance(app.screen, Confirm))
        await press_live(app, "n", lambda: not isinstance(app.screen, Confirm))
        assert pane.running
        await press_live(app, "c", lambda: isinstance(app.screen, Confirm))
        await press_live(app, "y", lambda: not isinstance(app.screen, Confirm))
        await until(pilot, lambda: not pane.running, 30, "the run to stop")
        await settle(pilot)
        assert rows(app, "#runs-table")[0][4] == "cancelled"
        assert "run 1 cancelled" in log_text(app)
    assert store.query("SELECT status FROM runs") == [("cancelled",)]
