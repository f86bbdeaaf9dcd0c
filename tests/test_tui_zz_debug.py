import traceback
import pytest
from textual.screen import Screen
from test_tui_screens import test_browse_override_is_stored_and_export_follows_it, test_browse_filters_search_and_versions, store_run, empty_store, test_import_lists_the_dataset_and_its_rejected_records, test_strict_import_is_refused_and_shows_the_bad_records, test_a_missing_file_is_reported_inline, test_models_tab_asks_the_ollama_server_and_checks_the_files  # noqa

@pytest.fixture(autouse=True)
def trace_focus(monkeypatch):
    orig = Screen.set_focus
    def sf(self, widget, *a, **k):
        ids = [getattr(n, "id", None) for n in (widget.ancestors if widget else [])][:3]
        print(f"SET_FOCUS {widget} {ids}\n" + "".join(l for l in traceback.format_stack(limit=8)[:-1] if "/tui/" in l or "tests/" in l))
        return orig(self, widget, *a, **k)
    monkeypatch.setattr(Screen, "set_focus", sf)

from textual.widgets import TabbedContent as _TC

@pytest.fixture(autouse=True)
def trace_active(monkeypatch):
    orig = _TC._watch_active
    def wa(self, active):
        print(f"ACTIVE -> {active}\n" + "".join(traceback.format_stack(limit=12)[:-1][-6:]))
        return orig(self, active)
    monkeypatch.setattr(_TC, "_watch_active", wa)
