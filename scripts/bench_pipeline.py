"""How well the pipeline overlaps the teacher's writing with the student's scoring.

Runs N samples of the cherry Alpaca file through the whole pipeline, with the Ollama-protocol test
server as teacher (a fixed latency per request) and the embedded student, then scores the same pairs
again alone in a fresh store. Prints, from one run:

    wall time / max(teacher ideal, scoring alone)      target <= 1.2

where teacher ideal = calls x latency / concurrency.

    .venv/bin/python scripts/bench_pipeline.py --n 40 --latency 1.0 --concurrency 4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_DATA = REPO.parent / "shared" / "data" / "cherry_alpaca_5_percent.json"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--student", default="gemma3-270m")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="srt-bench-"))
    os.environ.setdefault("SRT_HOME", str(home))

    from srt_local.config import load_models
    from srt_local.importer import import_dataset
    from srt_local.pairs import Pair
    from srt_local.pipeline import RunOptions, prepare_run, run_pipeline
    from srt_local.scoring import score_cached
    from srt_local.store import Store
    from srt_local.student import Student
    from tests.ollama_server import OllamaTestServer

    records = json.loads(args.data.read_text())[: args.n]
    data = home / "bench.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    config = load_models()

    with OllamaTestServer(latency=args.latency, parallel=args.concurrency) as server:
        os.environ["OLLAMA_HOST"] = server.url
        store = Store.open(home / "pipeline.duckdb")
        import_dataset(store, data, name="bench")
        run_id = prepare_run(
            store,
            RunOptions(
                dataset="bench",
                teacher="ollama",
                student=args.student,
                concurrency=args.concurrency,
            ),
            config,
        )
        start = time.perf_counter()
        summary = run_pipeline(store, run_id, config)
        wall = time.perf_counter() - start
        calls = len(server.chat_requests)
    pairs = [
        Pair(*row)
        for row in store.query(
            "SELECT DISTINCT v.instruction, v.input, v.output FROM versions v "
            "JOIN scores s USING (pair_hash)"
        )
    ]
    store.close()

    student = Student.load(config.student(args.student))
    fresh = Store.open(home / "alone.duckdb")
    start = time.perf_counter()
    score_cached(student, pairs, fresh)
    scoring_alone = time.perf_counter() - start
    student.close()
    fresh.close()

    ideal = calls * args.latency / args.concurrency
    bound = max(ideal, scoring_alone)
    print(
        f"samples {args.n}, status {summary.status}, teacher calls {calls}, "
        f"pairs scored {len(pairs)}"
    )
    print(f"teacher ideal  {ideal:8.1f} s  ({calls} x {args.latency} s / {args.concurrency})")
    print(f"scoring alone  {scoring_alone:8.1f} s")
    print(f"pipeline wall  {wall:8.1f} s")
    print(
        f"overlap ratio  {wall / bound:8.2f}  (wall / max(teacher ideal, scoring alone); "
        "target <= 1.2)"
    )


if __name__ == "__main__":
    main()
