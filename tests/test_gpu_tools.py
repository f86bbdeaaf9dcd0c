"""The tools prepared here for the GPU machine: the trimmed llama.cpp source and the benchmark."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path, PurePosixPath
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_trim_keeps_the_build_and_drops_the_rest() -> None:
    keep = script("trim_llama_source").keep
    kept = [
        "CMakeLists.txt",
        "pyproject.toml",
        "llama_cpp/llama_cpp.py",
        "vendor/llama.cpp/CMakeLists.txt",
        "vendor/llama.cpp/src/llama-context.cpp",
        "vendor/llama.cpp/ggml/src/ggml.c",
        "vendor/llama.cpp/ggml/src/CMakeLists.txt",
        "vendor/llama.cpp/ggml/src/ggml-cuda/mmq.cu",
        "vendor/llama.cpp/ggml/src/ggml-cpu/ggml-cpu.c",
        "vendor/llama.cpp/tools/mtmd/mtmd.cpp",
        "vendor/llama.cpp/tools/CMakeLists.txt",
    ]
    dropped = [
        ".git/modules/vendor/llama.cpp/objects/pack/x.pack",
        "docs/index.md",
        "tests/test_llama.py",
        "vendor/llama.cpp/models/ggml-vocab-llama-bpe.gguf",
        "vendor/llama.cpp/docs/build.md",
        "vendor/llama.cpp/ggml/src/ggml-vulkan/ggml-vulkan.cpp",
        "vendor/llama.cpp/ggml/src/ggml-metal/ggml-metal.m",
        "vendor/llama.cpp/tools/server/server.cpp",
        "vendor/llama.cpp/examples/simple/simple.cpp",
    ]
    assert all(keep(PurePosixPath(p)) for p in kept)
    assert not any(keep(PurePosixPath(p)) for p in dropped)


def test_synthetic_presets_have_the_real_shapes() -> None:
    presets = script("synthetic_gguf").PRESETS
    eight = presets["8b"]
    assert (eight.n_layer, eight.n_embd, eight.n_ff, eight.n_head, eight.n_head_kv) == (
        32,
        4096,
        14336,
        32,
        8,
    )
    assert eight.n_vocab == 128256
    # Llama-3-8B has 8.03 B parameters; the 0.53 B of the input embedding are looked up, not
    # multiplied, so they are not in the compute limit.
    assert 7.45e9 < eight.n_params < 7.55e9
    assert 2.6e8 < presets["gemma270m"].n_params < 2.8e8


@pytest.mark.slow
def test_bench_gpu_runs_end_to_end_on_the_cpu(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "scripts/bench_gpu.py",
            "--smoke",
            "--models",
            "gemma270m",
            "--dir",
            str(tmp_path),
            "--out",
            str(tmp_path / "out"),
            "--budget",
            "2",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    rows = json.loads((tmp_path / "out" / "bench_gpu.json").read_text())
    ways = {r["way"]: r for r in rows}
    assert ways["llama.cpp host"]["target_per_s"] > 0
    assert ways["llama.cpp device"]["target_per_s"] > 0
    assert ways["host vs device path"]["extra"]["host_vs_device"] < 1e-4
    assert ways["invariance kv_align 16"]["extra"]["alone_vs_packed"] < 1e-4
