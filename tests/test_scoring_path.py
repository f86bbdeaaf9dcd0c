"""The two scoring paths (host log-softmax, reduction inside llama.cpp's graph), their settings,
their cache keys, and the synthetic student that measures speed at real scale."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from srt_local.config import ConfigError, StudentSpec, load_models
from srt_local.logprobs import EngineSettings, ScoringPathError, resolve
from srt_local.migrations import MIGRATIONS
from srt_local.pairs import Pair
from srt_local.scoring import score_cached
from srt_local.store import Store
from srt_local.student import PairScore, Student

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-4
PAIRS = [
    Pair("Name three colours of the rainbow.", "", "Red, orange and yellow."),
    Pair("Translate the sentence into French.", "The cat sleeps.", "Le chat dort."),
    Pair("Give a synonym.", "happy", "Glad, or joyful when it is stronger."),
]
GEMMA_VOCAB = 262144


# ---------------------------------------------------------------- sizes and settings (no model)


def test_cpu_defaults_are_the_measured_ones() -> None:
    r = resolve(EngineSettings(), GEMMA_VOCAB, on_gpu=False, device_ok=True, host_free=0)
    assert (r.path, r.n_batch, r.n_seq_max, r.kv_align, r.fixed_shape) == (
        "host",
        512,
        16,
        16,
        False,
    )
    assert r.max_outputs == (128 << 20) // (4 * GEMMA_VOCAB)


def test_gpu_defaults_reduce_on_the_device_in_large_fixed_decodes() -> None:
    r = resolve(EngineSettings(), 128256, on_gpu=True, device_ok=True, host_free=64 << 30)
    assert (r.path, r.n_batch, r.n_seq_max, r.fixed_shape) == ("device", 4096, 64, True)
    assert r.max_outputs == 4096  # 8 GiB of host output buffers would allow 4185 rows
    # 8 GiB of llama.cpp's host output buffers at 16 bytes per vocabulary entry per row.
    gemma = resolve(EngineSettings(), GEMMA_VOCAB, True, True, 64 << 30)
    assert gemma.max_outputs == (8 << 30) // (16 * GEMMA_VOCAB)
    # Little free memory: fewer rows.
    small = resolve(EngineSettings(), 128256, on_gpu=True, device_ok=True, host_free=4 << 30)
    assert small.max_outputs == (1 << 30) // (16 * 128256)
    # A GPU with 8 GiB left after the model: a quarter of it for the reduction's buffers.
    tight = resolve(EngineSettings(), 128256, True, True, 64 << 30, gpu_free=8 << 30)
    assert tight.max_outputs == (2 << 30) // (12 * 128256)
    # Without the binding, auto falls back to the host path; asking for the device is an error.
    assert resolve(EngineSettings(), 128256, True, False, 64 << 30).path == "host"
    with pytest.raises(ScoringPathError, match="scoring_path = 'host'"):
        resolve(EngineSettings(scoring_path="device"), 128256, True, False, 64 << 30)


def test_settings_override_the_backend_choice() -> None:
    s = EngineSettings(
        scoring_path="host", n_batch=2048, n_seq_max=8, rows_per_decode=300, kv_align=64
    )
    r = resolve(s, 128256, on_gpu=True, device_ok=True, host_free=64 << 30)
    assert (r.path, r.n_batch, r.n_seq_max, r.max_outputs, r.kv_align) == (
        "host",
        2048,
        8,
        300,
        64,
    )
    off = resolve(EngineSettings(fixed_shape="off"), 128256, True, True, 64 << 30)
    assert not off.fixed_shape


def test_the_engine_and_models_toml_name_the_same_choices() -> None:
    from srt_local import config, logprobs

    assert config.SCORING_PATHS == logprobs.SCORING_PATHS
    assert config.FIXED_SHAPE == logprobs.FIXED_SHAPE


def test_models_toml_student_settings(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(
        '[students.big]\npath = "big.gguf"\nscoring_path = "device"\nn_batch = 8192\n'
        'n_ubatch = 1024\nn_seq_max = 32\nrows_per_decode = 2048\nkv_align = 256\nfixed_shape = "on"\n'
    )
    spec = load_models(good).student("big")
    assert (spec.scoring_path, spec.n_batch, spec.n_ubatch, spec.n_seq_max) == (
        "device",
        8192,
        1024,
        32,
    )
    assert (spec.rows_per_decode, spec.kv_align, spec.fixed_shape) == (2048, 256, "on")
    for line, key in (
        ('scoring_path = "gpu"', "scoring_path"),
        ("n_batch = 8", "n_batch"),
        ('fixed_shape = "yes"', "fixed_shape"),
    ):
        bad = tmp_path / "bad.toml"
        bad.write_text(f'[students.big]\npath = "big.gguf"\n{line}\n')
        with pytest.raises(ConfigError, match=rf"bad.toml: \[students.big\] key '{key}'"):
            load_models(bad)


# ---------------------------------------------------------------- the cache key


def test_migration_moves_old_scores_to_the_host_path(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE _migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP)")
    for name, sql in MIGRATIONS:
        if name == "m0xx_i12gpu_score_path":
            break
        con.execute(sql)
        con.execute("INSERT INTO _migrations (name) VALUES (?)", [name])
    con.execute(
        "INSERT INTO scores (student_sha256, template, max_tokens, pair_hash, student_name, "
        "status, ifd_ppl) VALUES ('abc', 'vicuna', 2048, 'h1', 's', 'ok', 0.5)"
    )
    con.close()
    with Store.open(path) as store:
        assert store.query("SELECT score_path, ifd_ppl FROM scores") == [("host", 0.5)]
        # The same pair scored on the device path is a second row, not a conflict.
        store.query(
            "INSERT INTO scores (student_sha256, template, max_tokens, score_path, pair_hash, "
            "student_name, status, ifd_ppl) VALUES ('abc', 'vicuna', 2048, 'device', 'h1', 's', "
            "'ok', 0.6)"
        )
        assert store.query("SELECT count(*) FROM scores")[0][0] == 2
        with pytest.raises(duckdb.ConstraintException):
            store.query(
                "INSERT INTO scores (student_sha256, template, max_tokens, score_path, "
                "pair_hash, student_name, status) VALUES ('abc', 'vicuna', 2048, 'device', "
                "'h1', 's', 'ok')"
            )


# ---------------------------------------------------------------- real models


def load(gguf: Path, **engine: object) -> Student:
    spec = StudentSpec(name=gguf.name, path=gguf, template="vicuna", n_threads=2)
    return Student.load(spec, EngineSettings(**engine))  # type: ignore[arg-type]


def assert_close(a: list[PairScore], b: list[PairScore]) -> None:
    for x, y in zip(a, b, strict=True):
        assert x.status == y.status == "ok"
        assert (x.n_y_tokens, x.n_x_tokens) == (y.n_y_tokens, y.n_x_tokens)
        for field in ("loss_y_given_x", "loss_y", "loss_x_given_y", "loss_x"):
            assert getattr(y, field) == pytest.approx(getattr(x, field), abs=TOL)


@pytest.mark.slow
@pytest.mark.parametrize("gguf_name", ["gemma_gguf", "smollm_gguf"])
def test_device_path_on_the_cpu_equals_the_host_path(
    gguf_name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    gguf: Path = request.getfixturevalue(gguf_name)
    with load(gguf, scoring_path="host") as host:
        assert host.score_path == "host"
        expected = host.score_pairs(PAIRS)
    with Store.open(tmp_path / "s.duckdb") as store, load(gguf, scoring_path="device") as dev:
        assert dev.score_path == "device"
        got = score_cached(dev, PAIRS, store)
        # The device path's scores are cached under its own key, apart from the host path's.
        paths = store.query("SELECT DISTINCT score_path FROM scores")
        assert paths == [("device",)]
        # Pieces of a long text, and fixed-shape decodes, on the device path too.
        dev.engine.stats.decodes = 0
    assert_close(expected, got)
    with load(gguf, scoring_path="device", n_batch=32, fixed_shape="on") as small:
        pieces = small.score_pairs(PAIRS)
        assert small.engine.stats.decodes > 4 * len(PAIRS)
        assert small.engine.stats.filler > 0
    assert_close(expected, pieces)


# ---------------------------------------------------------------- the synthetic student


@pytest.mark.slow
def test_synthetic_tiny_student_scores_with_srt_score(tmp_path: Path) -> None:
    gguf = tmp_path / "tiny.gguf"
    made = subprocess.run(
        [sys.executable, "scripts/synthetic_gguf.py", "tiny", str(gguf), "--type", "q8_0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    data = tmp_path / "pairs.jsonl"
    data.write_text(
        "".join(
            json.dumps({"instruction": p.instruction, "input": p.input, "output": p.output}) + "\n"
            for p in PAIRS[:2]
        )
    )
    run = subprocess.run(
        [sys.executable, "-m", "srt_local.cli", "score", str(data), "--student", str(gguf)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    # Random weights: every token is about as likely as any other, log(2048) nats each.
    for r in rows:
        assert 6.5 < r["loss_y"] < 8.5
