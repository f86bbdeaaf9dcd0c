"""The engine stays importable without the screen or the model runtime (STYLE.md)."""

from __future__ import annotations

import subprocess
import sys

ENGINE_MODULES = [
    "srt_local",
    "srt_local.config",
    "srt_local.store",
    "srt_local.paths",
    "srt_local.model_files",
    "srt_local.errors",
    "srt_local.reflection",
    "srt_local.parsing",
    "srt_local.readonly_sql",
    "srt_local.model_status",
    "srt_local.teachers",
    "srt_local.teachers.registry",
]


def test_import_srt_local_pulls_in_neither_textual_nor_llama_cpp() -> None:
    code = (
        "import sys, importlib\n"
        f"for m in {ENGINE_MODULES!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'llama_cpp', 'tui'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_config_teachers_and_status_import_no_client_until_used() -> None:
    # config reads the backend registry and `srt models` the status of every model: neither may
    # pull in an HTTP client or llama.cpp before a teacher is opened or a server asked.
    code = (
        "import sys, importlib\n"
        "for m in ('srt_local.config', 'srt_local.teachers', 'srt_local.model_status', "
        "'srt_local.parsing'): importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('httpx', 'ollama', 'llama_cpp'))\n"
        "bad += [m for m in sys.modules if m in ('srt_local.teachers.ollama', "
        "'srt_local.teachers.llamacpp', 'srt_local.teachers.auto')]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_ray_is_imported_only_for_the_ray_executor() -> None:
    # The package, the command line (every command, `srt run --help` included), the run engine
    # and the executor settings work without Ray; only `--executor ray` loads it.
    code = (
        "import sys, importlib\n"
        "for m in ('srt_local', 'srt_local.cli', 'srt_local.commands.run_cmd', "
        "'srt_local.commands.score', 'srt_local.run.engine', 'srt_local.pipeline', "
        "'srt_local.executors', 'srt_local.config'): importlib.import_module(m)\n"
        "from click.testing import CliRunner\n"
        "from srt_local.cli import cli\n"
        "CliRunner().invoke(cli, ['run', '--help'])\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] == 'ray')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
