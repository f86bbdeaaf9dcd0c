"""The Report tab: the figures of `srt report` for the current run, driven like a user."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Static
from textual.worker import WorkerState
from textual_plotext import PlotextPlot

from srt_local.config import load_models
from srt_local.judge.runner import judge_run
from srt_local.teachers import open_teacher
from tests.judge_server import JudgeTestServer
from tests.tui_support import build_store
from tui.app import SrtApp
from tui.screens.report import ReportPane


async def settle(pilot: Pilot[Any], timeout: float = 30.0) -> None:
    app = pilot.app
    quiet = 0
    deadline = time.monotonic() + timeout
    while quiet < 2:
        await pilot.pause()
        busy = [w for w in app.workers if w.state in (WorkerState.PENDING, WorkerState.RUNNING)]
        quiet = 0 if busy else quiet + 1
        assert time.monotonic() < deadline, f"workers still busy: {busy}"


async def test_report_tab_shows_kept_branches_and_judge_win_rates(tmp_path: Path) -> None:
    store, run_id = build_store(tmp_path)
    try:
        with JudgeTestServer() as server:  # prefers the longer response: every rewrite here
            os.environ["OLLAMA_HOST"] = server.url
            try:
                teacher = await open_teacher("ollama", load_models())
                summary = await judge_run(store, run_id, teacher)
                await teacher.aclose()
            finally:
                os.environ.pop("OLLAMA_HOST", None)
        assert summary.judged == 6
        app = SrtApp(store, theme="dark")
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            await pilot.press("8")
            await settle(pilot)
            assert not app.worker_errors, app.worker_errors
            pane = app.query_one(ReportPane)
            assert pane.data is not None and pane.data.run["run_id"] == run_id
            text = str(app.query_one("#report-caption", Static).render())
            assert "3 kept, 3 rejected of 6 decided" in text
            assert "vs original" in text and "win rate 100% [100%-100%]" in text
            assert "orders agree 100%" in text
            charts = {
                name: app.query_one(f"#report-{name}", PlotextPlot).plt.build()
                for name in ("ifd", "rifd", "wins")
            }
            assert "IFD · keep below 1" in charts["ifd"] and "original (6)" in charts["ifd"]
            assert "r-IFD · keep below 1" in charts["rifd"] and "kept (3)" in charts["rifd"]
            assert "vs original 100% [100%-100%] n=3" in charts["wins"]
    finally:
        store.close()


async def test_report_tab_says_how_to_judge_a_run_not_judged_yet(tmp_path: Path) -> None:
    store, run_id = build_store(tmp_path)
    try:
        app = SrtApp(store, theme="light")
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("8")
            await settle(pilot)
            assert not app.worker_errors, app.worker_errors
            text = str(app.query_one("#report-caption", Static).render())
            assert f"not judged yet: srt judge {run_id}" in text
            wins = app.query_one("#report-wins", PlotextPlot).plt.build()
            assert "not judged yet" in wins
    finally:
        store.close()
