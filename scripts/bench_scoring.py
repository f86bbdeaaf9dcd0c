#!/usr/bin/env python3
"""Benchmark the student scorer against its limit and, when torch is there, the paper's method.

For each embedded student, on the first N samples of an Alpaca file, one run prints:
- scorer: tokens/s of Student.score_pairs (all four texts of every pair, tokens decoded);
- limit: the same token sequences decoded by llama.cpp, in the same packs, with logits requested
  at the same positions and nothing read (no log-softmax, no bookkeeping);
- their ratio, and the peak RSS of the process that scored;
- if torch, transformers and gguf import: a one-sample-at-a-time HF transformers fp32 scorer of
  the same GGUF weights (the reference code's method) on the same token sequences, and our
  speed over it, with the mean relative IFD difference between the two.

The scorer and the HF model live in worker processes of their own (so each peak RSS is its
own) and work in turns on small blocks of samples: scorer, limit and HF take the same block
back to back, in rotating order, so that all three see the same machine even when other
processes come and go on it.

    .venv/bin/python scripts/bench_scoring.py --n 100
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from multiprocessing import get_context
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cherry_alpaca_5_percent.json"
STUDENTS = ("gemma3-270m", "smollm2-135m")

# One model per worker process, loaded by the pool's initializer.
_state: dict[str, Any] = {}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pairs(data: Path, n: int) -> list[Any]:
    from srt_local.pairs import Pair

    records = json.loads(data.read_text("utf-8"))[:n]
    return [Pair(r["instruction"], r.get("input") or "", r["output"]) for r in records]


# ---------------------------------------------------------------- the llama.cpp worker


def llama_init(name: str, threads: int) -> None:
    from dataclasses import replace

    from srt_local.config import load_models
    from srt_local.student import Student

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    student = Student.load(replace(load_models().student(name), n_threads=threads))
    _state["student"] = student


def llama_info() -> dict[str, Any]:
    student = _state["student"]
    return {"gguf": str(student.gguf_path), "threads": student.engine.n_threads}


def llama_plan(pairs: list[Any]) -> dict[str, Any]:
    """The block's distinct token sequences and each pair's four of them (not timed)."""
    jobs, plans = _state["student"].plan(pairs)
    return {
        "jobs": [[list(j.tokens), j.start] for j in jobs],
        "plans": [list(p) if p is not None else None for p in plans],
    }


def llama_step(pairs: list[Any], step: str) -> dict[str, Any]:
    """Time the scorer on a block, or the limit: the same decodes with nothing read."""
    student = _state["student"]
    engine = student.engine
    engine.stats.__init__()
    if step == "scorer":
        start = time.perf_counter()
        scores = student.score_pairs(pairs)
        elapsed = time.perf_counter() - start
        return {
            "scorer_s": elapsed,
            "stats": dict(engine.stats.__dict__),
            "ifd": [s.ifd_ppl for s in scores],
            "ok": sum(s.status == "ok" for s in scores),
            "peak_rss_mb": _peak_rss_mb(),
        }
    jobs, _ = student.plan(pairs)
    start = time.perf_counter()
    engine.score(jobs, read_logits=False)
    return {"limit_s": time.perf_counter() - start, "limit_tokens": engine.stats.tokens}


# ---------------------------------------------------------------- the HF transformers worker


def hf_available() -> bool:
    try:
        import gguf  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


def hf_init(gguf_path: str, threads: int) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    path = Path(gguf_path)
    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    )
    model.eval()
    with torch.inference_mode():
        model(torch.tensor([[1, 2, 3, 4]]))  # warm-up
    _state["model"] = model


def hf_block(jobs: list[list[Any]]) -> dict[str, Any]:
    """The reference code's method: fp32, one sequence at a time, logits at every position."""
    import torch

    model = _state["model"]
    sums: list[float] = []
    tokens = 0
    start = time.perf_counter()
    with torch.inference_mode():
        for seq, first in jobs:
            logits = model(torch.tensor([seq])).logits[0, :-1].float()
            logp = torch.log_softmax(logits, dim=-1)
            picked = logp.gather(1, torch.tensor(seq[1:])[:, None])[:, 0]
            sums.append(float(picked[first - 1 :].sum()))
            tokens += len(seq) - 1
    elapsed = time.perf_counter() - start
    return {"hf_s": elapsed, "tokens": tokens, "sums": sums, "peak_rss_mb": _peak_rss_mb()}


def _hf_ifd(block: dict[str, Any], sums: list[float]) -> list[float | None]:
    jobs = block["jobs"]
    out: list[float | None] = []
    for plan in block["plans"]:
        if plan is None:
            out.append(None)
            continue
        losses = [-sums[j] / (len(jobs[j][0]) - jobs[j][1]) for j in plan]
        out.append(math.exp(losses[0] - losses[1]))
    return out


# ---------------------------------------------------------------- one student


COUNTS = ("tokens", "outputs", "filler", "decodes", "decode_s")
TOTALS = (
    "ok",
    "scorer_s",
    "limit_s",
    "hf_s",
    "hf_tokens",
    "peak_rss_mb",
    "hf_peak_rss_mb",
    *COUNTS,
)
ORDERS = (("scorer", "limit", "hf"), ("limit", "hf", "scorer"), ("hf", "scorer", "limit"))


def bench(name: str, pairs: list[Any], threads: int, block: int, use_hf: bool) -> dict[str, Any]:
    spawn = get_context("spawn")
    total: dict[str, Any] = dict.fromkeys(TOTALS, 0)
    total.update(student=name, samples=len(pairs), ifd_diff=[])
    with ExitStack() as stack:
        llama = stack.enter_context(ProcessPoolExecutor(1, spawn, llama_init, (name, threads)))
        info = llama.submit(llama_info).result()
        total["threads"] = info["threads"]
        for step in ("scorer", "limit"):  # warm-up: the first decodes allocate buffers
            llama.submit(llama_step, pairs[:2], step).result()
        hf = None
        if use_hf:
            hf = stack.enter_context(
                ProcessPoolExecutor(1, spawn, hf_init, (info["gguf"], info["threads"]))
            )
        for k in range(0, len(pairs), block):
            part = pairs[k : k + block]
            result = llama.submit(llama_plan, part).result()
            for step in ORDERS[(k // block) % 3]:
                if step == "hf":
                    if hf is not None:
                        result["hf"] = hf.submit(hf_block, result["jobs"]).result()
                else:
                    result.update(llama.submit(llama_step, part, step).result())
            assert result["limit_tokens"] == result["stats"]["tokens"], "same tokens"
            _add(total, result, result.get("hf"))
    return total


def _add(total: dict[str, Any], block: dict[str, Any], hf: dict[str, Any] | None) -> None:
    total["ok"] += block["ok"]
    total["scorer_s"] += block["scorer_s"]
    total["limit_s"] += block["limit_s"]
    for key in COUNTS:
        total[key] += block["stats"][key]
    total["peak_rss_mb"] = max(total["peak_rss_mb"], block["peak_rss_mb"])
    if hf is not None:
        total["hf_s"] += hf["hf_s"]
        total["hf_tokens"] += hf["tokens"]
        total["hf_peak_rss_mb"] = max(total["hf_peak_rss_mb"], hf["peak_rss_mb"])
        for ours, theirs in zip(block["ifd"], _hf_ifd(block, hf["sums"]), strict=True):
            if ours and theirs:
                total["ifd_diff"].append(abs(ours - theirs) / theirs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="samples to score (default 100)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="an Alpaca JSON array")
    parser.add_argument("--students", default=",".join(STUDENTS), help="comma-separated names")
    parser.add_argument("--threads", type=int, default=0, help="0: physical cores")
    parser.add_argument("--block", type=int, default=4, help="samples per turn (default 4)")
    parser.add_argument("--no-hf", action="store_true", help="skip the HF transformers scorer")
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"{args.data}: no such file (give --data)")
    use_hf = not args.no_hf and hf_available()
    pairs = _pairs(args.data, args.n)
    load_before = os.getloadavg()
    rows = [
        bench(name, pairs, args.threads, args.block, use_hf) for name in args.students.split(",")
    ]

    load = ", ".join(f"{a:.1f}/{b:.1f}" for a, b in zip(load_before, os.getloadavg(), strict=True))
    print(f"{os.cpu_count()} CPUs; load average (1, 5, 15 min) before/after: {load}")
    _table(
        ["student", "samples", "tokens", "scorer tok/s", "limit tok/s", "ratio", "peak RSS MB"],
        [
            [
                r["student"],
                r["samples"],
                r["tokens"],
                f"{r['tokens'] / r['scorer_s']:.0f}",
                f"{r['tokens'] / r['limit_s']:.0f}",
                f"{r['limit_s'] / r['scorer_s']:.3f}",
                f"{r['peak_rss_mb']:.0f}",
            ]
            for r in rows
        ],
    )
    for r in rows:
        print(
            f"  {r['student']}: {r['ok']}/{r['samples']} ok, {r['outputs']} target tokens, "
            f"{r['filler']} filler tokens, {r['decodes']} decodes, {r['threads']} threads; "
            f"scorer {r['scorer_s']:.1f} s, of which llama_decode {r['decode_s']:.1f} s; "
            f"limit {r['limit_s']:.1f} s"
        )
    if not use_hf:
        why = "--no-hf" if args.no_hf else "torch, transformers or gguf is not importable"
        print(f"HF transformers scorer skipped ({why}).")
        return
    print()
    _table(
        ["student", "HF fp32 tok/s", "ours/HF", "HF peak RSS MB", "mean |dIFD|/IFD"],
        [
            [
                r["student"],
                f"{r['hf_tokens'] / r['hf_s']:.0f}",
                f"{r['hf_s'] / r['hf_tokens'] * r['tokens'] / r['scorer_s']:.2f}",
                f"{r['hf_peak_rss_mb']:.0f}",
                f"{sum(r['ifd_diff']) / max(len(r['ifd_diff']), 1):.4f}",
            ]
            for r in rows
        ],
    )


def _table(header: list[str], rows: list[list[Any]]) -> None:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    for row in [header, *rows]:
        print("  ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
