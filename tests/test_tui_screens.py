"""Each tab's main path, driven like a user with Textual's Pilot, on real DuckDB stores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from textual.widgets import Input, Select, Static, TabbedContent, TextArea

from srt_local.store import Store
from tests.ollama_server import OllamaTestServer
from tests.tui_support import records, rows, settle, text, type_into, write_dataset_file
from tui.app import SrtApp
from tui.screens.export import parse_top
from tui.widgets.arrow_table import ArrowTable
from tui.widgets.sample_view import SampleView

SIZE = (100, 30)


# ---------------------------------------------------------------- Datasets


async def test_import_lists_the_dataset_and_its_rejected_records(
    empty_store: Store, tmp_path: Path
) -> None:
    data = write_dataset_file(tmp_path / "tiny.json")
    app = SrtApp(empty_store, theme="dark")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await type_into(pilot, "#path", str(data))
        await pilot.press("enter")
        await settle(pilot)
        assert "6 imported" in text(app, "#import-status")
        assert "1 duplicates" in text(app, "#import-status")
        [dataset] = rows(app, "#datasets-table")
        assert dataset[:8] == [1, "tiny", "alpaca", 9, 6, 1, 2, 0]
        errors = rows(app, "#errors-table")
        assert [e[:2] for e in errors] == [
            ["index 6 (line 32)", "instruction"],
            ["index 7 (line 37)", "instruction"],
        ]
        assert "rejected records of dataset 1: 2" in text(app, "#errors-table .caption")
    assert empty_store.query("SELECT count(*) FROM samples") == [(6,)]


async def test_strict_import_is_refused_and_shows_the_bad_records(
    empty_store: Store, tmp_path: Path
) -> None:
    data = write_dataset_file(tmp_path / "tiny.json")
    app = SrtApp(empty_store, theme="dark")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.click("#strict")
        await type_into(pilot, "#path", str(data))
        await pilot.press("enter")
        await settle(pilot)
        assert "refused" in text(app, "#import-status")
        assert "error" in app.query_one("#import-status").classes
        assert len(rows(app, "#errors-table")) == 2
        assert "nothing written" in text(app, "#errors-table .caption")
    assert empty_store.query("SELECT count(*) FROM datasets") == [(0,)]


async def test_a_missing_file_is_reported_inline(empty_store: Store, tmp_path: Path) -> None:
    app = SrtApp(empty_store, theme="dark")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await type_into(pilot, "#path", str(tmp_path / "nope.json"))
        await pilot.press("enter")
        await settle(pilot)
        assert "nope.json" in text(app, "#import-status")
        assert "error" in app.query_one("#import-status").classes


# ---------------------------------------------------------------- Models


async def test_models_tab_asks_the_ollama_server_and_checks_the_files(
    empty_store: Store, tmp_path: Path
) -> None:
    with OllamaTestServer() as server:
        extra = tmp_path / "models.toml"
        extra.write_text(
            f'[teachers.ollama]\nbackend = "ollama"\nmodel = "{server.model}"\n'
            f'host = "{server.url}"\n\n'
            f'[teachers.absent]\nbackend = "ollama"\nmodel = "no-such-model:1b"\n'
            f'host = "{server.url}"\n\n'
            '[teachers.gone]\nbackend = "ollama"\nmodel = "m"\nhost = "http://127.0.0.1:9"\n\n'
            '[students.lost]\npath = "missing.gguf"\n'
        )
        app = SrtApp(empty_store, models_file=extra, theme="dark")
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("2")
            await settle(pilot)
            status = {r[0]: r[2] for r in rows(app, "#models-table")}
            assert status == {
                "gemma3-270m": "GGUF present",
                "smollm2-135m": "GGUF present",
                "lost": "missing",
                "ollama": "pulled",
                "smollm2-135m-chat": "GGUF present",
                "absent": "not pulled",
                "gone": "unreachable",
            }
            assert rows(app, "#models-table")[0][4] == "253 MB"
            names = [r[0] for r in rows(app, "#models-table")]
            app.query_one("#models-table", ArrowTable).focus_table()
            for _ in range(names.index("absent")):
                await pilot.press("down")
            await pilot.pause()
            assert "ollama pull no-such-model:1b" in text(app, "#model-detail")
        assert any(r.path == "/api/tags" for r in server.requests)


# ---------------------------------------------------------------- Browse and Export


async def test_browse_override_is_stored_and_export_follows_it(
    store_run: tuple[Store, int], tmp_path: Path
) -> None:
    store, _ = store_run
    app = SrtApp(store, theme="dark")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await settle(pilot)
        assert [r[0] for r in rows(app, "#decisions")] == [1, 2, 3, 4, 5, 6]
        assert "rows 1–6 of 6" in text(app, "#decisions .caption")
        # sample 3 (branch Q, not emitted): accept it; sample 1 (emitted): reject it
        await pilot.press("down", "down")
        await settle(pilot)
        head = str(app.query_one(SampleView).query_one(".head", Static).render())
        assert "sample 3" in head, (app.focused, head)
        await pilot.press("a")
        await settle(pilot)
        await pilot.press("up", "up", "x")
        await settle(pilot)
        overrides = dict(
            store.query("SELECT sample_id, override FROM decisions WHERE override IS NOT NULL")
        )
        assert overrides == {3: "accept", 1: "reject"}
        first = records(app, "#decisions")[0]
        assert (first["override"], first["kept"]) == ("reject", "no")

        await pilot.press("7")
        await settle(pilot)
        out = tmp_path / "kept.json"
        await type_into(pilot, "#out", str(out))
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "wrote 3 of 3 selected samples" in text(app, "#export-status")
        entry = json.loads(text(app, "#entry"))
        assert entry == json.loads((tmp_path / "dataset_info.json").read_text())
        assert entry["kept"]["file_name"] == "kept.json"
    written = json.loads(out.read_text())
    instructions = [r["instruction"] for r in written]
    assert "Give three evidence-based tips for sleeping better and say why each works." in (
        instructions
    )
    assert not any("planet" in i for i in instructions)


async def test_browse_filters_search_and_versions(store_run: tuple[Store, int]) -> None:
    store, _ = store_run
    app = SrtApp(store, theme="dark")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await settle(pilot)
        app.query_one("#outcome", Select).value = "kept"
        await settle(pilot)
        assert [r[0] for r in rows(app, "#decisions")] == [1, 2, 6]
        app.query_one("#outcome", Select).value = "all"
        await settle(pilot)
        await pilot.press("slash", *"planet", "enter")
        await settle(pilot)
        assert [r[0] for r in rows(app, "#decisions")] == [1], (
            app.query_one("#search", Input).value,
            app.focused,
            text(app, "#decisions .caption"),
        )
        view = app.query_one(SampleView)
        right = str(view.query_one(".right", Static).render())
        assert right.startswith("reflected QA (final)")
        assert "Explain which planet" in right
        assert "teacher's critique (QA)" in str(view.query_one(".critique", Static).render())
        await pilot.press("v")
        assert str(view.query_one(".right", Static).render()).startswith("reflected Q ")
        # sorting: s cycles the key, d flips the order
        app.query_one("#search", Input).value = ""
        await pilot.press("slash", "enter")
        await settle(pilot)
        await pilot.press("s", "d")
        await settle(pilot)
        assert "sort ifd ori ↓" in text(app, "#decisions .caption")
        ifds = [r["ifd ori"] for r in records(app, "#decisions")]
        assert ifds == sorted(ifds, reverse=True)


# ---------------------------------------------------------------- Distributions


async def test_distributions_count_the_run(store_run: tuple[Store, int]) -> None:
    store, _ = store_run
    app = SrtApp(store, theme="dark")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await settle(pilot)
        assert text(app, "#dist-caption").startswith("6 decided · 3 kept")


# ---------------------------------------------------------------- SQL


async def test_sql_runs_queries_shows_errors_and_refuses_writes(
    store_run: tuple[Store, int],
) -> None:
    store, _ = store_run
    app = SrtApp(store, theme="dark")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("6")
        await settle(pilot)
        assert isinstance(app.focused, TextArea)
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert {r[0]: r[1] for r in rows(app, "#results")} == {"QA": 2, "A": 2, "Q": 1, "ori": 1}
        assert text(app, "#sql-status").startswith("4 rows ·")

        editor = app.query_one("#editor", TextArea)
        for sql, message in (
            ("DELETE FROM decisions", "read-only: DELETE refused, it would change the store"),
            ("SELEC 1", "Parser Error"),
            ("SELECT nextval('run_ids')", "it would change the store"),
            ("COPY decisions TO 'x.csv'", "read-only: COPY refused"),
            ("", "nothing to run"),
            ("SELECT * FROM nowhere", "nowhere"),
        ):
            editor.text = sql
            await pilot.press("ctrl+r")
            await settle(pilot)
            assert message in text(app, "#sql-status")
            assert "error" in app.query_one("#sql-status").classes
        assert store.query("SELECT count(*) FROM decisions") == [(6,)]

        # the schema list: enter on a table inserts its name
        editor.text = "SELECT count(*) FROM "
        editor.move_cursor(editor.document.end)
        tree = app.query_one("#schema")
        tree.focus()
        names = [str(n.label) for n in tree.root.children]  # type: ignore[attr-defined]
        assert {"datasets", "samples", "decisions", "selection"} <= set(names)
        tree.cursor_line = names.index("decisions")  # type: ignore[attr-defined]
        await pilot.press("enter", "ctrl+r")
        await settle(pilot)
        assert editor.text == "SELECT count(*) FROM decisions"
        assert rows(app, "#results") == [[6]]


# ---------------------------------------------------------------- Export and the app


def test_top_k_parsing() -> None:
    assert parse_top("") == (None, None)
    assert parse_top("100") == (100, None)
    assert parse_top("10%") == (None, pytest.approx(0.1))
    assert parse_top("0.25") == (None, 0.25)
    with pytest.raises(ValueError, match="a count"):
        parse_top("ten")


async def test_export_errors_are_inline(store_run: tuple[Store, int], tmp_path: Path) -> None:
    store, _ = store_run
    app = SrtApp(store, theme="dark")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("7")
        await settle(pilot)
        await type_into(pilot, "#out", str(tmp_path / "kept.txt"))
        await pilot.press("enter")
        await settle(pilot)
        assert "kept.txt" in text(app, "#export-status")
        await type_into(pilot, "#top", "lots")
        await pilot.press("enter")
        await settle(pilot)
        assert "top-k 'lots'" in text(app, "#export-status")
        assert not (tmp_path / "kept.txt").exists()


async def test_digits_switch_tabs_and_ctrl_t_switches_theme(store_run: tuple[Store, int]) -> None:
    store, _ = store_run
    app = SrtApp(store, theme="dark")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        tabs = app.query_one("#tabs", TabbedContent)
        for key, tab in zip(
            "2345671",
            ("models", "run", "browse", "distributions", "sql", "export", "datasets"),
            strict=True,
        ):
            await pilot.press("escape", key)
            assert tabs.active == tab
        assert app.theme == "textual-dark"
        await pilot.press("ctrl+t")
        assert app.theme == "textual-light"


def test_light_terminals_are_recognised(monkeypatch: pytest.MonkeyPatch) -> None:
    from tui.app import terminal_is_light

    for value, light in (
        ("0;15", True),
        ("15;0", False),
        ("7", True),
        ("12;8", False),
        ("", False),
        ("default;default", False),
    ):
        monkeypatch.setenv("COLORFGBG", value)
        assert terminal_is_light() is light


# ---------------------------------------------------------------- the current run, owned by the app


async def test_a_run_chosen_in_one_tab_is_shown_by_the_others(
    store_run: tuple[Store, int],
) -> None:
    store, _ = store_run
    with store.transaction() as con:
        con.execute(
            "INSERT INTO runs (dataset_id, teacher_name, teacher_key, student_name, "
            "student_sha256, template, max_tokens, emit_unreflected, config, status) "
            "SELECT dataset_id, teacher_name, teacher_key, student_name, student_sha256, "
            "template, max_tokens, emit_unreflected, config, 'paused' FROM runs"
        )
    app = SrtApp(store, theme="dark")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await settle(pilot)
        # nothing chosen yet: the latest run becomes the app's current run
        assert app.current_run == 2
        assert app.query_one("#browse-run", Select).value == 2
        assert rows(app, "#decisions") == []
        app.query_one("#browse-run", Select).value = 1  # as the user's choice does
        await settle(pilot)
        assert app.current_run == 1
        assert len(rows(app, "#decisions")) == 6
        await pilot.press("7")
        await settle(pilot)
        assert app.query_one("#export-run", Select).value == 1
        assert app.query_one("#out", Input).value == "srt-run1-alpaca.json"
        await pilot.press("escape", "5")  # the focus is in the file field: leave it first
        await settle(pilot)
        assert app.query_one("#dist-run", Select).value == 1
        assert text(app, "#dist-caption").startswith("6 decided")


def test_panes_and_widgets_never_import_the_app() -> None:
    code = (
        "import sys, importlib, pkgutil, tui.screens, tui.widgets\n"
        "for pkg in (tui.screens, tui.widgets):\n"
        "    for m in pkgutil.iter_modules(pkg.__path__):\n"
        "        importlib.import_module(f'{pkg.__name__}.{m.name}')\n"
        "print('tui.app' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
