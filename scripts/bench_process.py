#!/usr/bin/env python3
"""The whole `srt score` process against a bare script doing only the decodes, timed from outside.

For each student, on the first N samples of an Alpaca file:
- srt: `python -m srt_local.cli score FILE --student S --db NEW --out OUT` in a process of its own
  (start-up imports, config, store, hashing, tokenizing, log-softmax, cache writes, output);
- bare: a process that imports only the engine, loads the same GGUF with the same settings and
  decodes the same token sequences in the same packs with logits requested at the same positions,
  reading nothing (the sequences are planned beforehand, outside the timing).
It prints both wall times and CPU times (user + system, from the kernel's accounting of each child)
and bare / srt for each (1.0: the process costs nothing beyond its decodes). On a shared machine the
wall times move with the neighbours' load by more than the difference measured; the CPU times
hardly do, so they are the figure to read there. The two alternate, `--repeat` times each.

    .venv/bin/python scripts/bench_process.py --n 30
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cherry_alpaca_5_percent.json"
STUDENTS = ("gemma3-270m", "smollm2-135m")


def bare(jobs_file: Path) -> int:
    """The bare process: load, decode, exit (run as `bench_process.py --bare JOBS`)."""
    spec = json.loads(jobs_file.read_text())
    from srt_local.logprobs import EngineSettings, Job, LlamaEngine

    engine = LlamaEngine(Path(spec["gguf"]), EngineSettings(**spec["settings"]))
    jobs = [Job(tuple(tokens), start) for tokens, start in spec["jobs"]]
    engine.score(jobs, read_logits=False)
    engine.close()
    return 0


def plan(student: str, data: Path, n: int, out: Path) -> None:
    """Write the GGUF, engine settings and token sequences that `srt score` will decode."""
    from srt_local.config import load_models
    from srt_local.pairs import Pair
    from srt_local.student import Student

    spec = load_models().student(student)
    records = json.loads(data.read_text("utf-8"))[:n]
    pairs = [Pair(r["instruction"], r.get("input") or "", r["output"]) for r in records]
    with Student.load(spec) as s:
        jobs, _ = s.plan(pairs)
        settings = {
            "n_ctx": spec.max_tokens,
            "n_threads": spec.n_threads,
            "n_gpu_layers": spec.n_gpu_layers,
        }
        out.write_text(
            json.dumps(
                {
                    "gguf": str(s.gguf_path),
                    "settings": settings,
                    "jobs": [[list(j.tokens), j.start] for j in jobs],
                }
            )
        )


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one process run to its end."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--students", default=",".join(STUDENTS))
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--bare", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare:
        return bare(args.bare)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory(prefix="srt-bench-process-") as tmp:
        work = Path(tmp)
        # One SRT_HOME for all runs: the GGUF's hash is remembered there after the first run, as
        # on a user's machine.
        env["SRT_HOME"] = str(work / "home")
        os.environ["SRT_HOME"] = env["SRT_HOME"]
        data = work / "pairs.json"
        data.write_text(json.dumps(json.loads(args.data.read_text("utf-8"))[: args.n]))
        for student in args.students.split(","):
            jobs = work / f"{student}.jobs.json"
            plan(student, args.data, args.n, jobs)
            srt_cmd = [sys.executable, "-m", "srt_local.cli", "score", str(data)]
            srt_cmd += ["--student", student, "--out", str(work / "out.jsonl")]
            bare_cmd = [sys.executable, str(Path(__file__).resolve()), "--bare", str(jobs)]
            # plan() loaded the GGUF (now in the page cache) and hashed it (now remembered).
            walls: list[tuple[float, float]] = []
            cpus: list[tuple[float, float]] = []
            for k in range(args.repeat):
                db = work / f"{student}-{k}.duckdb"
                # Alternate the order so that neither always runs first.
                if k % 2:
                    b = timed(bare_cmd, env)
                    s = timed([*srt_cmd, "--db", str(db)], env)
                else:
                    s = timed([*srt_cmd, "--db", str(db)], env)
                    b = timed(bare_cmd, env)
                walls.append((s[0], b[0]))
                cpus.append((s[1], b[1]))
                print(
                    f"{student}: round {k + 1}: wall srt {s[0]:.2f} s, bare {b[0]:.2f} s "
                    f"(bare/srt {b[0] / s[0]:.3f}); CPU srt {s[1]:.2f} s, bare {b[1]:.2f} s "
                    f"(bare/srt {b[1] / s[1]:.3f})",
                    flush=True,
                )
            wall = statistics.median(b / s for s, b in walls)
            cpu = statistics.median(b / s for s, b in cpus)
            print(
                f"{student}: {args.n} samples, {args.repeat} rounds: bare/srt median wall {wall:.3f}, "
                f"CPU time {cpu:.3f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
