"""A store with a finished run made by the real pipeline (the test server as teacher, the Gemma
student), copied per test; and `srt` run as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from srt_local.config import load_models
from srt_local.importer import import_dataset
from srt_local.pipeline import RunOptions, prepare_run, run_pipeline
from srt_local.store import Store
from tests.ollama_server import OllamaTestServer
from tests.pairs import SIX_PAIRS

HOSTILE = "<script>alert('pwned')</script>"
PAIRS = [
    {
        "instruction": f"Explain what {HOSTILE} does in a web page.",
        "input": "",
        "output": f"It runs a script: {HOSTILE} shows a box & <b>blocks</b> the page.",
    },
    *SIX_PAIRS,
]


def build_run(folder: Path) -> Path:
    """A store at folder/base.duckdb holding dataset 'seven' and one finished run on it."""
    data = folder / "seven.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    db = folder / "base.duckdb"
    with OllamaTestServer() as server:
        old = os.environ.get("OLLAMA_HOST")
        os.environ["OLLAMA_HOST"] = server.url
        try:
            with Store.open(db) as store:
                import_dataset(store, data, name="seven")
                config = load_models()
                run_id = prepare_run(store, RunOptions(dataset="seven", teacher="ollama"), config)
                assert run_pipeline(store, run_id, config).status == "done"
        finally:
            if old is None:
                os.environ.pop("OLLAMA_HOST", None)
            else:
                os.environ["OLLAMA_HOST"] = old
    return db


def copy_store(base: Path, folder: Path) -> Path:
    db = folder / "srt.duckdb"
    shutil.copy(base, db)
    return db


def srt_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "srt_local.cli", *args]


def srt(*args: str, host: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"OLLAMA_HOST": host} if host else {})}
    return subprocess.run(srt_cmd(*args), capture_output=True, text=True, env=env, timeout=600)
