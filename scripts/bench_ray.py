#!/usr/bin/env python3
"""Scoring throughput on Ray: 1 and 2 student actors of 1 thread each, and 4 and 8 where the
cores exist, with the scaling efficiency of each width (its speed over 1 worker's, over width).

A loopback cluster of as many CPUs as the widest run is started in this process (as
`srt --executor ray` starts one); every width scores the same pairs without the score cache,
timed from the first batch sent to the last score back, with the actors already loaded. The
same pairs scored in this process by one 1-thread student give the cost of going through Ray.

    .venv/bin/python scripts/bench_ray.py --n 64 --student smollm2-135m
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cherry_alpaca_5_percent.json"
WIDTHS = (1, 2, 4, 8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=64, help="pairs scored at each width")
    parser.add_argument("--student", default="smollm2-135m")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    from srt_local.config import load_models
    from srt_local.executors import RaySettings
    from srt_local.executors import ray_scoring as rs
    from srt_local.pairs import Pair
    from srt_local.student import Student

    records = json.loads(args.data.read_text("utf-8"))[: args.n]
    pairs = [Pair(r["instruction"], r.get("input") or "", r["output"]) for r in records]
    spec = load_models().student(args.student)
    cores = os.cpu_count() or 1
    widths = sorted({w for w in WIDTHS if w <= max(2, min(cores, args.max_workers))})
    print(
        f"{len(pairs)} pairs, student {spec.name}, batches of {args.batch_size}, "
        f"{cores} cores, load average {os.getloadavg()[0]:.1f}"
    )

    student = Student.load(replace(spec, n_threads=1))
    start = time.perf_counter()
    reference = student.score_pairs(pairs)
    local_s = time.perf_counter() - start
    student.close()
    print(f"in process, 1 thread : {len(pairs) / local_s:7.2f} pairs/s")

    rs.connect(RaySettings(workers=max(widths), threads=1))
    base = None
    for width in widths:
        settings = RaySettings(workers=width, threads=1, batch_size=args.batch_size)
        pool = rs.open_pool(settings, spec, None, None, lambda _m: None)
        try:
            start = time.perf_counter()
            scores = pool.score_all(pairs)
            elapsed = time.perf_counter() - start
        finally:
            pool.close()
        assert scores == reference, "Ray's scores differ from the local student's"
        rate = len(pairs) / elapsed
        base = base or rate
        speedup = rate / base
        print(
            f"ray, {width} worker(s) x 1 thread: {rate:7.2f} pairs/s  "
            f"{pool.tokens / elapsed:8.0f} tok/s  speed-up {speedup:4.2f}  "
            f"efficiency {speedup / width:4.2f}"
        )
    import ray

    ray.shutdown()


if __name__ == "__main__":
    main()
