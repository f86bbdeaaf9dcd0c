"""`srt score` end to end: a real file, the real student, the real store, the real process."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAIRS = [
    {"instruction": "Name the largest planet in the solar system.", "output": "Jupiter."},
    {"instruction": "Translate into Italian.", "input": "Good night", "output": "Buona notte"},
    {
        "instruction": "Décris le goût du café.",
        "input": "",
        "output": "Amer, chaud et un peu fruité ☕",
    },
]


def srt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "srt_local.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )


def write_jsonl(path: Path, rows: Sequence[Mapping[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


@pytest.mark.slow
def test_score_writes_one_valid_line_per_sample_and_reuses_the_cache(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    out = tmp_path / "scores.jsonl"
    db = tmp_path / "cache.duckdb"
    args = ["score", str(data), "--student", "smollm2-135m", "--db", str(db)]
    first = srt(*args, "--out", str(out))
    assert first.returncode == 0, first.stderr
    lines = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert [row["index"] for row in lines] == [0, 1, 2]
    for row in lines:
        assert row["status"] == "ok"
        assert row["n_y_tokens"] > 0 and row["n_x_tokens"] > 0
        for key in (
            "ifd_ppl",
            "rifd_ppl",
            "ifd_loss",
            "rifd_loss",
            "loss_y_given_x",
            "loss_y",
            "loss_x_given_y",
            "loss_x",
        ):
            assert isinstance(row[key], float) and math.isfinite(row[key]) and row[key] > 0
        assert row["ifd_ppl"] == pytest.approx(math.exp(row["loss_y_given_x"] - row["loss_y"]))
    assert "3/3" in first.stderr

    # Second run: every score comes from the store, to stdout, identical.
    again = srt(*args)
    assert again.returncode == 0, again.stderr
    assert [json.loads(line) for line in again.stdout.splitlines()] == lines
    assert "0 tok/s" in again.stderr


@pytest.mark.slow
def test_limit_and_a_json_array(tmp_path: Path) -> None:
    data = tmp_path / "pairs.json"
    data.write_text(json.dumps(PAIRS), "utf-8")
    result = srt(
        "score",
        str(data),
        "--student",
        "smollm2-135m",
        "--limit",
        "1",
        "--no-cache",
        "--template",
        "none",
        "--max-tokens",
        "64",
    )
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert json.loads(line)["index"] == 0
    assert "template none+nobos, max_tokens 64" in result.stderr


def test_a_malformed_file_names_file_line_and_field_and_writes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text(
        json.dumps(PAIRS[0]) + "\n" + json.dumps({"instruction": "Hi", "output": 7}) + "\n{oops\n",
        "utf-8",
    )
    out = tmp_path / "never.jsonl"
    result = srt("score", str(data), "--student", "smollm2-135m", "--out", str(out))
    assert result.returncode == 2
    assert f"{data}: line 2: field 'output'" in result.stderr
    assert f"{data}: line 3:" in result.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [data]


def test_a_bad_record_in_a_json_array_names_its_index(tmp_path: Path) -> None:
    data = tmp_path / "bad.json"
    data.write_text(json.dumps([PAIRS[0], {"output": "no instruction"}]), "utf-8")
    result = srt("score", str(data), "--student", "smollm2-135m", "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "index 1" in result.stderr and "instruction" in result.stderr
    assert not (tmp_path / "o").exists()
