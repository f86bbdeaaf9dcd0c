"""Daily use of the TUI, as a user meets it: help, the palette, keys in fields, the first run, the
SQL editor (completion, history, whole cells, copy, export), and hostile stored text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Input, OptionList, Static, TabbedContent, TextArea

from srt_local.result_files import ResultFileError, write_result
from srt_local.store import Store
from srt_local.textsafe import visible
from tests.tui_support import build_store, records, rows, settle, text
from tui.app import SrtApp
from tui.screens.run import RunPane
from tui.widgets.ask_path import AskPath
from tui.widgets.cell_view import CellView
from tui.widgets.confirm import Confirm
from tui.widgets.help import HelpScreen
from tui.widgets.path_input import PathSuggester
from tui.widgets.sample_view import SampleView
from tui.widgets.sql_editor import SqlEditor

SIZE = (100, 30)


def screen_text(app: SrtApp) -> str:
    """Everything the current screen's Static widgets show."""
    return "\n".join(str(s.render()) for s in app.screen.query(Static))


def field_text(field: Widget) -> str:
    if isinstance(field, Input):
        return field.value
    assert isinstance(field, TextArea)
    return field.text


# ---------------------------------------------------------------- help, palette, quit, keys


async def test_help_shows_the_keys_of_the_tab_in_use(store_run: tuple[Store, int]) -> None:
    app = SrtApp(store_run[0], theme="dark")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        shown = screen_text(app)
        assert "Keys of the Browse tab" in shown
        assert "Accept" in shown and "Reject" in shown
        assert "ctrl+q" in shown
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("escape", "6")
        await settle(pilot)
        await pilot.press("f1")  # works from inside the SQL editor too
        assert isinstance(app.screen, HelpScreen)
        shown = screen_text(app)
        assert "Keys of the SQL tab" in shown and "Run query" in shown
        assert "^r / f5" in shown


async def test_quit_is_in_the_footer_and_the_palette_has_the_app_commands(
    empty_store: Store,
) -> None:
    app = SrtApp(empty_store, theme="dark")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        footer = {
            (b.binding.action, b.binding.description)
            for b in app.screen.active_bindings.values()
            if b.binding.show
        }
        assert {("quit", "Quit"), ("help", "Help")} <= footer
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for wanted in (
            "Tab 4: Browse",
            "Import a file…",
            "Load the demo data",
            "Start a run",
            "Pause the run",
            "Export the selection",
            "Export the SQL results",
        ):
            assert wanted in titles
        [demo] = [c for c in app.get_system_commands(app.screen) if c.title == "Load the demo data"]
        await demo.callback()
        await settle(pilot)
        assert [r[1] for r in rows(app, "#datasets-table")] == ["demo"]


async def test_keys_typed_in_fields_go_into_them_and_fire_no_shortcut(
    store_run: tuple[Store, int],
) -> None:
    app = SrtApp(store_run[0], theme="dark")
    keys = ["1", "4", "a", "x", "s", "c", "p", "u", "r", "i", "d", "question_mark", "slash"]
    async with app.run_test(size=SIZE) as pilot:
        tabs = app.query_one("#tabs", TabbedContent)
        for tab in ("datasets", "run", "browse", "sql", "export"):
            app.action_show_tab(tab)
            await settle(pilot)
            pane = await app.mount_pane(tab)
            for field in pane.query("Input, TextArea"):
                if isinstance(field, Input) and field.type == "integer":
                    continue  # takes digits only: checked below
                field.focus()
                await pilot.pause()
                before = field_text(field)
                await pilot.press(*keys)
                await settle(pilot)
                assert tabs.active == tab, f"a key typed in {field} switched the tab"
                assert app.screen is app.screen_stack[0], f"a key typed in {field} opened a dialog"
                after = field_text(field)
                assert "14axscpurid?/" in after and after != before, (field, after)
        app.action_show_tab("run")
        await settle(pilot)
        limit = app.query_one("#limit", Input)
        limit.focus()
        await pilot.press("1", "s", "2")
        await settle(pilot)
        assert limit.value == "12" and tabs.active == "run"
        assert not app.query_one(RunPane).running


async def test_the_run_log_wraps_long_lines_and_shows_them_exactly(empty_store: Store) -> None:
    from tui.screens.run import RunLog

    app = SrtApp(empty_store, theme="dark")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("escape", "3")  # an empty store puts the focus in the path field
        await settle(pilot)
        pane = app.query_one(RunPane)
        pane.write_log("teacher said: " + "[bold]word[/bold] " * 30 + "\x1b[2J the end")
        await settle(pilot)
        log = app.query_one("#run-log", RunLog)
        assert len(log.lines) >= 4  # one long line, wrapped at the log's width
        shown = "".join(line.text for line in log.lines)
        assert "[bold]word[/bold]" in shown and "␛[2J the end" in shown
        assert "\x1b" not in shown


def test_a_pause_says_what_it_waits_for() -> None:
    from tui.screens.run import waiting_text

    assert waiting_text(3, 2) == (
        "pausing run 3: waiting for 2 samples in flight (teacher replies and scores) to be "
        "stored, so that none is asked again on resume…"
    )
    assert "1 sample in flight" in waiting_text(3, 1)
    assert waiting_text(None, 0) == "pausing the run: storing the last results…"


# ---------------------------------------------------------------- the first run


async def test_an_empty_store_offers_the_demo_data_and_takes_typing_at_once(
    empty_store: Store, tmp_path: Path
) -> None:
    app = SrtApp(empty_store, theme="dark")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.query_one("#first-run").display
        assert app.focused is app.query_one("#path")
        await pilot.press(*"abc")
        assert app.query_one("#path", Input).value == "abc"
        await pilot.click("#demo")
        await settle(pilot)
        assert "imported" in text(app, "#import-status")
        assert [r[1] for r in rows(app, "#datasets-table")] == ["demo"]
        assert not app.query_one("#first-run").display
    assert empty_store.query("SELECT name FROM datasets") == [("demo",)]


async def test_paths_complete_as_they_are_typed(tmp_path: Path) -> None:
    (tmp_path / "alpaca_small.json").write_text("[]")
    (tmp_path / "alpine").mkdir()
    (tmp_path / ".hidden.json").write_text("[]")
    suggest = PathSuggester()
    assert await suggest.get_suggestion(f"{tmp_path}/alpa") == f"{tmp_path}/alpaca_small.json"
    assert await suggest.get_suggestion(f"{tmp_path}/alpi") == f"{tmp_path}/alpine/"
    assert await suggest.get_suggestion(f"{tmp_path}/.hid") == f"{tmp_path}/.hidden.json"
    assert await suggest.get_suggestion(f"{tmp_path}/zzz") is None
    assert await suggest.get_suggestion(f"{tmp_path}/nowhere/x") is None


async def test_the_file_picker_imports_the_chosen_file(
    empty_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.tui_support import write_dataset_file

    data = write_dataset_file(tmp_path / "picked.json")
    monkeypatch.chdir(tmp_path)
    app = SrtApp(empty_store, theme="dark")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        from textual_fspicker import FileOpen

        await pilot.press("ctrl+o")
        await until_screen(pilot, FileOpen)
        field = app.screen.query_one(Input)
        field.focus()
        field.value = data.name
        await pilot.press("enter")
        await settle(pilot)
        assert [r[1] for r in rows(app, "#datasets-table")] == ["picked"]


# ---------------------------------------------------------------- the SQL editor


async def until_screen(pilot: Pilot[Any], kind: type) -> None:
    """Until the dialog `kind` is on top (its worker waits on it, so `settle` cannot be used)."""
    for _ in range(100):
        if isinstance(pilot.app.screen, kind):
            return
        await pilot.pause(0.05)
    raise AssertionError(f"no {kind.__name__} on top: {pilot.app.screen}")


async def sql_tab(pilot: Pilot[Any]) -> SqlEditor:
    await pilot.press("6")
    await settle(pilot)
    editor = pilot.app.query_one("#editor", SqlEditor)
    assert pilot.app.focused is editor
    editor.text = ""
    return editor


async def test_sql_completes_tables_and_columns(store_run: tuple[Store, int]) -> None:
    app = SrtApp(store_run[0], theme="dark")
    async with app.run_test(size=SIZE) as pilot:
        editor = await sql_tab(pilot)
        assert editor.language == "sql"  # tree-sitter's SQL grammar highlights it
        await pilot.press(*"SELECT * FROM dec")
        await settle(pilot)
        offered = app.query_one("#completions", OptionList)
        assert offered.display and editor.names[0] == "decisions"
        await pilot.press("enter")
        assert editor.text == "SELECT * FROM decisions"
        assert not offered.display
        # a qualified name offers the table's columns; tab takes the only one
        await pilot.press(*" WHERE decisions.overr", "tab")
        assert editor.text == "SELECT * FROM decisions WHERE decisions.override"
        # escape closes the list and keeps the text
        await pilot.press(*" AND sam")
        assert offered.display
        await pilot.press("escape")
        assert not offered.display and editor.text.endswith("AND sam")


async def test_sql_history_walks_back_and_forth(store_run: tuple[Store, int]) -> None:
    app = SrtApp(store_run[0], theme="dark")
    async with app.run_test(size=SIZE) as pilot:
        editor = await sql_tab(pilot)
        for sql in ("SELECT 1 AS one", "SELECT 2 AS two"):
            editor.text = sql
            await pilot.press("ctrl+r")
            await settle(pilot)
        editor.text = "SELECT 3 -- a draft"
        await pilot.press("ctrl+up")
        assert editor.text == "SELECT 2 AS two"
        await pilot.press("ctrl+up")
        assert editor.text == "SELECT 1 AS one"
        await pilot.press("ctrl+down", "ctrl+down")
        assert editor.text == "SELECT 3 -- a draft"
    # kept for the next session
    app = SrtApp(store_run[0], theme="dark")
    async with app.run_test(size=SIZE) as pilot:
        editor = await sql_tab(pilot)
        await pilot.press("ctrl+up")
        assert editor.text == "SELECT 2 AS two"


async def test_sql_whole_cell_copy_and_export(store_run: tuple[Store, int], tmp_path: Path) -> None:
    long = "word " * 2000 + "END"
    app = SrtApp(store_run[0], theme="dark")
    async with app.run_test(size=SIZE) as pilot:
        editor = await sql_tab(pilot)
        editor.text = f"SELECT 1 AS n, '{long}' AS long_text UNION ALL SELECT 2, 'short'"
        await pilot.press("ctrl+r")
        await settle(pilot)
        app.query_one("#results").focus_table()  # type: ignore[attr-defined]
        await pilot.press("right", "enter")
        assert isinstance(app.screen, CellView)
        assert app.screen.query_one(TextArea).text == long
        await pilot.press("c", "escape")
        assert app.clipboard == long
        await pilot.press("down", "y")
        assert app.clipboard == "2\tshort"

        out = tmp_path / "result.json"
        await pilot.press("ctrl+s")
        await until_screen(pilot, AskPath)
        app.screen.query_one(Input).value = str(out)
        await pilot.press("enter")
        await settle(pilot)
        assert json.loads(out.read_text()) == [
            {"n": 1, "long_text": long},
            {"n": 2, "long_text": "short"},
        ]
        assert "wrote 2 rows" in text(app, "#sql-status")
        # an existing file is replaced only when the user says so
        await pilot.press("ctrl+s")
        await until_screen(pilot, AskPath)
        app.screen.query_one(Input).value = str(out)
        await pilot.press("enter")
        await until_screen(pilot, Confirm)
        await pilot.press("n")
        await settle(pilot)
    assert len(json.loads(out.read_text())) == 2


def test_results_are_written_in_the_format_their_suffix_names(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"id": [1, 2], "text": ["a,b", 'say "hi"\nnow']})
    assert write_result(table, tmp_path / "r.csv") == 2
    assert (tmp_path / "r.csv").read_text().splitlines()[0] == '"id","text"'
    write_result(table, tmp_path / "r.jsonl")
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert [json.loads(line)["text"] for line in lines] == ["a,b", 'say "hi"\nnow']
    write_result(table, tmp_path / "r.parquet")
    assert pq.read_table(tmp_path / "r.parquet").equals(table)
    with pytest.raises(ResultFileError, match="exists"):
        write_result(table, tmp_path / "r.csv")
    with pytest.raises(ResultFileError, match=r"unknown format \.txt"):
        write_result(table, tmp_path / "r.txt")
    with pytest.raises(ResultFileError, match="no such folder"):
        write_result(table, tmp_path / "nowhere" / "r.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r.jsonl", "r.parquet"]


# ---------------------------------------------------------------- hostile stored text

HOSTILE = [
    "Close the tag [/INST] and go on",
    "[bold]not bold[/bold] and print(my_list[i])",
    "Say :x: and :thumbs_up: plainly",
    "Colour \x1b[31mred\x1b[0m and set the title \x1b]0;owned\x07 here",
    "שלום עולם: right to left \u202eevil\u202c text",
    "a NUL\x00inside and a bell\x07 and CSI\x9b2J",
    "x" * 5000 + " END OF LONG LINE",
]


def test_visible_shows_every_control_character() -> None:
    assert visible("a\x1b[31mb") == "a␛[31mb"
    assert visible("nul\x00 del\x7f csi\x9b") == "nul␀ del␡ csi\\x9b"
    assert visible("lone \ud800 surrogate") == "lone \\ud800 surrogate"
    assert visible("rtl \u202eabc") == "rtl \\u202eabc"
    assert visible("tab\tline\nnext") == "tab\tline\nnext"
    assert visible("tab\tline\nnext", one_line=True) == "tab␉line␊next"
    for kept in ("[/INST]", "[bold]x", ":x:", "שלום", "print(my_list[i])"):
        assert visible(kept) == kept


@pytest.fixture
def hostile_store(tmp_path: Path) -> Any:
    records: list[object] = [
        {"instruction": text, "input": "", "output": f"answer {i} [/INST] \x1b[2J"}
        for i, text in enumerate(HOSTILE[:6])
    ]
    records[5] = {"instruction": HOSTILE[6], "input": HOSTILE[5], "output": "ok"}
    store, run_id = build_store(tmp_path, records)
    yield store, run_id
    store.close()


def no_raw_controls(shown: str) -> None:
    assert "\x1b" not in shown and "\x00" not in shown and "\x9b" not in shown


async def test_hostile_text_is_shown_exactly_in_browse_and_sql(
    hostile_store: tuple[Store, int],
) -> None:
    store, _ = hostile_store
    app = SrtApp(store, theme="dark")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await settle(pilot)
        instructions = [r["instruction"] for r in records(app, "#decisions")]
        assert instructions[0] == "Close the tag [/INST] and go on"
        assert instructions[1] == "[bold]not bold[/bold] and print(my_list[i])"
        assert instructions[2] == "Say :x: and :thumbs_up: plainly"
        assert "␛[31mred␛[0m" in instructions[3] and "␛]0;owned␇" in instructions[3]
        assert "שלום עולם" in instructions[4] and "\\u202eevil" in instructions[4]
        for shown in instructions:
            no_raw_controls(shown)

        view = app.query_one(SampleView)
        for row, wanted in enumerate(
            ["[/INST]", "print(my_list[i])", ":x:", "␛[31mred", "\\u202eevil", "END OF LONG LINE"]
        ):
            app.query_one("#decisions").focus_table()  # type: ignore[attr-defined]
            app.query_one("#decisions").table.move_cursor(row=row)  # type: ignore[attr-defined]
            await settle(pilot)
            left = str(view.query_one(".left", Static).render())
            assert wanted in left, (row, left[:200])
            no_raw_controls(left)
        assert "NUL␀inside" in str(view.query_one(".left", Static).render())

        await pilot.press("escape", "6")
        await settle(pilot)
        editor = app.query_one("#editor", SqlEditor)
        editor.text = 'SELECT instruction AS "[b]name[/b]", input FROM samples ORDER BY sample_id'
        await pilot.press("ctrl+r")
        await settle(pilot)
        shown = records(app, "#results")
        assert [r["[b]name[/b]"] for r in shown][:3] == [
            "Close the tag [/INST] and go on",
            "[bold]not bold[/bold] and print(my_list[i])",
            "Say :x: and :thumbs_up: plainly",
        ]
        assert "NUL␀inside" in shown[5]["input"]
        for r in shown:
            no_raw_controls(str(r))
        app.query_one("#results").focus_table()  # type: ignore[attr-defined]
        for _ in range(5):
            await pilot.press("down")
        await pilot.press("enter")
        assert isinstance(app.screen, CellView)
        whole = app.screen.query_one(TextArea).text
        assert whole == visible(HOSTILE[6]) and whole.endswith("END OF LONG LINE")
        await pilot.press("escape")
        # a status quoting hostile text (a lone surrogate cannot even be stored) stays plain
        app.query_one("#sql-status").set("bad \ud800 [/INST] \x1b[2J")  # type: ignore[attr-defined]
        await pilot.pause()
        assert text(app, "#sql-status") == "bad \\ud800 [/INST] ␛[2J"
        assert not app.worker_errors
