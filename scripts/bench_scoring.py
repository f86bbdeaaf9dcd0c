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
Each student (and the HF scorer) runs in a fresh process, so each peak RSS is its own.

    .venv/bin/python scripts/bench_scoring.py --n 100
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cherry_alpaca_5_percent.json"
STUDENTS = ("gemma3-270m", "smollm2-135m")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pairs(data: Path, n: int) -> list[Any]:
    from srt_local.pairs import Pair

    records = json.loads(data.read_text("utf-8"))[:n]
    return [Pair(r["instruction"], r.get("input") or "", r["output"]) for r in records]


def _load(name: str, threads: int) -> Any:
    from dataclasses import replace

    from srt_local.config import load_models
    from srt_local.student import Student

    spec = replace(load_models().student(name), n_threads=threads)
    return Student.load(spec)


def bench_llama(name: str, data: str, n: int, threads: int, block: int) -> dict[str, Any]:
    """Scorer and limit for one student, in this (fresh) process.

    The samples go in blocks; each block is scored and its limit run back to back, in alternating
    order, so that both see the same machine (other processes come and go on a shared one).
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    pairs = _pairs(Path(data), n)
    student = _load(name, threads)
    engine = student.engine
    student.score_pairs(pairs[:2])  # warm-up: first decodes allocate buffers
    jobs, plans = student.plan(pairs)

    scores = []
    scorer_s = limit_s = 0.0
    tokens = outputs = filler = decodes = 0
    decode_s = 0.0
    for k in range(0, len(pairs), block):
        part = pairs[k : k + block]
        part_jobs, _ = student.plan(part)
        for step in ("scorer", "limit") if (k // block) % 2 == 0 else ("limit", "scorer"):
            engine.stats.__init__()
            start = time.perf_counter()
            if step == "scorer":
                scores += student.score_pairs(part)
                scorer_s += time.perf_counter() - start
                stats = engine.stats
                tokens += stats.tokens
                outputs += stats.outputs
                filler += stats.filler
                decodes += stats.decodes
                decode_s += stats.decode_s
                scored = stats.tokens
            else:
                engine.score(part_jobs, read_logits=False)
                limit_s += time.perf_counter() - start
                limited = engine.stats.tokens
        assert scored == limited, "the limit must decode the same tokens"

    ok = [s for s in scores if s.status == "ok"]
    result = {
        "student": name,
        "samples": len(pairs),
        "ok": len(ok),
        "tokens": tokens,
        "target_tokens": outputs,
        "filler_tokens": filler,
        "decodes": decodes,
        "scorer_s": scorer_s,
        "limit_s": limit_s,
        "decode_s": decode_s,
        "threads": engine.n_threads,
        "peak_rss_mb": _peak_rss_mb(),
        "ifd": [s.ifd_ppl for s in scores],
        "rifd": [s.rifd_ppl for s in scores],
        "jobs": [[list(j.tokens), j.start] for j in jobs],
        "plans": [list(p) if p is not None else None for p in plans],
        "gguf": str(student.gguf_path),
    }
    student.close()
    return result


def hf_available() -> bool:
    try:
        import gguf  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


def bench_hf(gguf_path: str, jobs: list[list[Any]], threads: int) -> dict[str, Any]:
    """The reference code's method: HF fp32, one sequence at a time, logits at every position."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    path = Path(gguf_path)
    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    )
    model.eval()
    sums: list[float] = []
    tokens = 0
    with torch.inference_mode():
        ids = torch.tensor([jobs[0][0]])
        model(ids)  # warm-up
        start = time.perf_counter()
        for seq, first in jobs:
            ids = torch.tensor([seq])
            logits = model(ids).logits[0, :-1].float()
            logp = torch.log_softmax(logits, dim=-1)
            target = torch.tensor(seq[1:])
            picked = logp.gather(1, target[:, None])[:, 0]
            sums.append(float(picked[first - 1 :].sum()))
            tokens += len(seq) - 1
        elapsed = time.perf_counter() - start
    return {"hf_s": elapsed, "hf_tokens": tokens, "sums": sums, "peak_rss_mb": _peak_rss_mb()}


def _hf_ifd(result: dict[str, Any], sums: list[float]) -> list[float | None]:
    import math

    jobs = result["jobs"]
    out: list[float | None] = []
    for plan in result["plans"]:
        if plan is None:
            out.append(None)
            continue
        losses = [-sums[j] / (len(jobs[j][0]) - jobs[j][1]) for j in plan]
        out.append(math.exp(losses[0] - losses[1]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="samples to score (default 100)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="an Alpaca JSON array")
    parser.add_argument("--students", default=",".join(STUDENTS), help="comma-separated names")
    parser.add_argument("--threads", type=int, default=0, help="0: physical cores")
    parser.add_argument(
        "--block", type=int, default=4, help="samples per scorer/limit block (they alternate)"
    )
    parser.add_argument("--no-hf", action="store_true", help="skip the HF transformers scorer")
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"{args.data}: no such file (give --data)")

    use_hf = not args.no_hf and hf_available()
    load_before = os.getloadavg()
    context = get_context("spawn")
    rows = []
    for name in args.students.split(","):
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            job = pool.submit(bench_llama, name, str(args.data), args.n, args.threads, args.block)
            result = job.result()
        hf = None
        if use_hf:
            with ProcessPoolExecutor(1, mp_context=context) as pool:
                hf_job = pool.submit(bench_hf, result["gguf"], result["jobs"], result["threads"])
                hf = hf_job.result()
        rows.append((result, hf))

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
            for r, _ in rows
        ],
    )
    for r, _ in rows:
        print(
            f"  {r['student']}: {r['ok']}/{r['samples']} ok, {r['target_tokens']} target tokens, "
            f"{r['filler_tokens']} filler tokens, {r['decodes']} decodes, {r['threads']} threads, "
            f"scorer {r['scorer_s']:.1f} s (of which llama_decode {r['decode_s']:.1f} s), "
            f"limit {r['limit_s']:.1f} s"
        )
    if not use_hf:
        why = "--no-hf" if args.no_hf else "torch, transformers or gguf is not importable"
        print(f"HF transformers scorer skipped ({why}).")
        return
    table = []
    for r, hf in rows:
        assert hf is not None
        ours = r["tokens"] / r["scorer_s"]
        theirs = hf["hf_tokens"] / hf["hf_s"]
        both = [(a, b) for a, b in zip(r["ifd"], _hf_ifd(r, hf["sums"]), strict=True) if a and b]
        rel = sum(abs(a - b) / b for a, b in both) / max(len(both), 1)
        table.append(
            [
                r["student"],
                f"{theirs:.0f}",
                f"{ours / theirs:.2f}",
                f"{hf['peak_rss_mb']:.0f}",
                f"{rel:.4f}",
            ]
        )
    print()
    _table(["student", "HF fp32 tok/s", "ours/HF", "HF peak RSS MB", "mean |dIFD|/IFD"], table)


def _table(header: list[str], rows: list[list[Any]]) -> None:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    for row in [header, *rows]:
        print("  ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
