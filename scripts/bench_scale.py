"""srt-local at scale: import, status, Browse and export of a store holding N pairs (default 1M).

    python scripts/bench_scale.py --pairs 1000000 [--dir DIR] [--keep]

Steps, each timed; the ones a user runs as a command are run as one, in a child process whose own
peak RSS is read from the kernel (os.wait4), so the numbers are those of `srt` itself (this process
stays small: a child's peak RSS starts at its parent's):
1. generate N alpaca records to a JSONL file (streamed; 1% exact duplicates, 0.1% bad records);
2. `srt import` it (the real command);
3. write a SYNTHETIC run over the dataset, in SQL through the store's methods: the original
   versions (as a run copies them), one reflected instruction and one reflected response per
   sample, two teacher calls per sample, scores for every version and a decision per sample.
   No model is involved: the scores are pseudo-random numbers, labelled "synthetic" in the store
   (teacher and student are named "synthetic"). They exist to give status, Browse and export
   the row counts of a real run;
4. `srt status` (the command) and `run_status` (its engine call), timed;
5. the first Browse page through `srt_local.review.browse_page` (the call the TUI makes), in a
   fresh process that opens the store, as the TUI does on start;
6. `srt export` of the run's selection (the command) to JSONL.

Targets (issue 13): import >= 50,000 records/s, peak RSS <= 1 GB for import and export, first
Browse page <= 1 s, `srt status` <= 1 s.

With `--ray`, the Ray scoring throughput rows (1 and 2 workers of 1 thread, 4 and 8 where the
cores exist) follow, printed by scripts/bench_ray.py in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGETS = {"import": 50_000, "rss_mb": 1024, "browse_s": 1.0, "status_s": 1.0}
# 64 made-up words of 2 to 5 letters: text that looks like text to DuckDB's string compression.
WORDS = [
    a + b
    for a in ("ka", "lo", "mi", "ne", "su", "tor", "vel", "qu")
    for b in ("", "ra", "n", "st", "mo", "li", "x", "de")
]


def generate(path: Path, n: int) -> tuple[int, int]:
    """N alpaca records, streamed to `path`: returns (duplicates, bad records) written."""
    dups = bad = 0
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            if i % 1000 == 999:
                f.write(json.dumps({"instruction": f"bad {i}", "output": i}) + "\n")
                bad += 1
                continue
            if i % 100 == 50:
                j = i - 50  # an exact copy of an earlier record
                dups += 1
            else:
                j = i
            r = random.Random(j)
            instruction = " ".join(r.choices(WORDS, k=r.randint(8, 30))) + f" (#{j})"
            context = " ".join(r.choices(WORDS, k=r.randint(0, 20))) if j % 3 == 0 else ""
            output = " ".join(r.choices(WORDS, k=r.randint(20, 120)))
            f.write(
                json.dumps({"instruction": instruction, "input": context, "output": output}) + "\n"
            )
    return dups, bad


LAST_CPU = [0.0]  # CPU seconds (user + system) of the last measured child


def measured(argv: list[str], env: dict[str, str]) -> tuple[float, float, int, str]:
    """Run argv as a child: (seconds, the child's own peak RSS in MB, exit code, output tail).

    The child's CPU time is left in LAST_CPU: on a shared machine, records per CPU-second say
    what the code costs when wall-clock rates say mostly how busy the machine was.
    """
    with tempfile.TemporaryFile(mode="w+") as out_file:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=out_file, stderr=subprocess.STDOUT)
        # wait4 gives this child's own rusage (RUSAGE_CHILDREN would be the max over all).
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        LAST_CPU[0] = usage.ru_utime + usage.ru_stime
        out_file.seek(0)
        tail = out_file.read()[-2000:]
    return seconds, usage.ru_maxrss / 1024, proc.returncode, tail


def srt_argv(*args: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        "import sys; from srt_local.cli import cli; sys.argv[0] = 'srt'; cli()",
        *args,
    ]


def synthetic_run(db: Path) -> tuple[int, float]:
    """Write a synthetic run over dataset 1 through the store's methods: (run id, seconds)."""
    from srt_local.store import Store

    start = time.perf_counter()
    with Store.open(db) as store:
        dataset_id = int(store.query("SELECT max(dataset_id) FROM datasets")[0][0])
        with store.transaction():
            run_id = int(
                store.query(
                    "INSERT INTO runs (dataset_id, teacher_name, teacher_key, student_name, "
                    "student_sha256, template, max_tokens, emit_unreflected, config, status, "
                    "finished_at) VALUES (?, 'synthetic', 'synthetic', 'synthetic', 'synthetic', "
                    "'vicuna', 2048, false, ?, 'done', current_timestamp) RETURNING run_id",
                    [dataset_id, json.dumps({"synthetic": True, "note": "bench_scale.py"})],
                )[0][0]
            )
        # One statement per table, each its own unit, as a run writes them (in far smaller ones).
        store.query(
            "INSERT INTO versions (sample_id, teacher_key, kind, instruction, input, output, "
            "pair_hash) SELECT sample_id, '', 'ori', instruction, input, output, pair_hash "
            "FROM samples WHERE dataset_id = ?",
            [dataset_id],
        )
        store.query(
            "INSERT INTO teacher_calls (sample_id, stage, source_kind, teacher_key, attempt, "
            "teacher_name, backend, model, prompt_version, output_mode, messages, raw_reply, "
            "outcome, started_at, finished_at) "
            "SELECT sample_id, stage, source, 'synthetic', 1, 'synthetic', 'synthetic', "
            "'synthetic', 'synthetic', 'json', '[]', 'synthetic reply', 'ok', now(), now() "
            "FROM samples, (VALUES ('instruction', 'ori'), ('response', 'Q')) t(stage, source) "
            "WHERE dataset_id = ?",
            [dataset_id],
        )
        for kind, column in (("Q", "instruction"), ("QA", "output")):
            store.query(
                "INSERT INTO versions (sample_id, teacher_key, kind, instruction, input, output, "
                "pair_hash, critique) SELECT sample_id, 'synthetic', ?, "
                + (
                    "instruction || ' (synthetic rewrite)'"
                    if column == "instruction"
                    else "instruction"
                )
                + ", input, "
                + ("output || ' (synthetic rewrite)'" if column == "output" else "output")
                + ", sha256(pair_hash || ?), 'synthetic' FROM samples WHERE dataset_id = ?",
                [kind, kind, dataset_id],
            )
        store.query(
            "INSERT INTO scores (student_sha256, template, max_tokens, pair_hash, student_name, "
            "status, detail, ifd_ppl, rifd_ppl, n_x_tokens, n_y_tokens) "
            "SELECT DISTINCT 'synthetic', 'vicuna', 2048, pair_hash, 'synthetic', 'ok', "
            "'synthetic', 0.5 + random(), 0.5 + random(), 40, 120 FROM versions "
            "WHERE sample_id IN (SELECT sample_id FROM samples WHERE dataset_id = ?)",
            [dataset_id],
        )
        store.query(
            "INSERT INTO decisions (run_id, sample_id, branch, final_kind, ifd_ori, ifd_q, "
            "rifd_base, rifd_reflected, ifd_final, rifd_final, ifd_margin, rifd_margin, passes, "
            "emitted, reason, decided_at) "
            "SELECT ?, sample_id, b, b, i_o, i_q, r_b, r_r, i_q, r_r, i_q - i_o, r_r - r_b, "
            "i_q < 1 AND r_r < 1, i_q < 1 AND r_r < 1, 'synthetic decision', "
            "now() - to_seconds(position) FROM ("
            "SELECT s.sample_id, s.position, CASE WHEN s.position % 4 = 0 THEN 'ori' ELSE 'QA' "
            "END AS b, 0.5 + random() AS i_o, 0.5 + random() AS i_q, 0.5 + random() AS r_b, "
            "0.5 + random() AS r_r FROM samples s WHERE dataset_id = ?)",
            [run_id, dataset_id],
        )
    return run_id, time.perf_counter() - start


def store_size(db: Path) -> int:
    wal = db.with_name(db.name + ".wal")
    return db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


BROWSE_CHILD = """
import sys, time
start = time.perf_counter()
from pathlib import Path
from srt_local.review import BrowseFilter, browse_page
from srt_local.store import Store
store = Store.open(Path(sys.argv[1]))
opened = time.perf_counter()
cpu = time.process_time()
table, total = browse_page(store, int(sys.argv[2]), BrowseFilter(), 100)
page = time.perf_counter()
cpu = time.process_time() - cpu
table2, _ = browse_page(store, int(sys.argv[2]), BrowseFilter(sort="ifd ori", descending=True), 100, 500_000)
deep = time.perf_counter()
print(f"RESULT {opened - start:.3f} {page - opened:.3f} {deep - page:.3f} {table.num_rows} {total} {cpu:.3f}")
"""

STATUS_CHILD = """
import sys, time
from pathlib import Path
from srt_local.run_status import run_status
from srt_local.store import Store
store = Store.open(Path(sys.argv[1]), read_only=True)
start, cpu = time.perf_counter(), time.process_time()
st = run_status(store, int(sys.argv[2]))
print(f"RESULT {time.perf_counter() - start:.3f} {time.process_time() - cpu:.3f} {st.samples}")
"""


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min)"


def result_line(tail: str) -> list[str]:
    for line in tail.splitlines():
        if line.startswith("RESULT "):
            return line.split()[1:]
    raise SystemExit(f"the child printed no result:\n{tail}")


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp one)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--ray", action="store_true", help="also the Ray scoring rows (scripts/bench_ray.py)"
    )
    parser.add_argument("--ray-pairs", type=int, default=32, help="pairs scored at each Ray width")
    parser.add_argument("--synthetic-run", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.synthetic_run:
        run_id, _ = synthetic_run(args.synthetic_run)
        print(f"RESULT {run_id}")
        return
    work = args.dir or Path(tempfile.mkdtemp(prefix="srt-bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "SRT_HOME": str(work / "home")}
    data, db, out = work / "bench.jsonl", work / "bench.duckdb", work / "export" / "kept.jsonl"
    for stale in (db, db.with_name(db.name + ".wal")):
        stale.unlink(missing_ok=True)
    print(f"bench_scale: {args.pairs:,} records in {work} ({load()})")

    start = time.perf_counter()
    dups, bad = generate(data, args.pairs)
    print(
        f"generate      {time.perf_counter() - start:7.1f} s  {data.stat().st_size / 1e6:,.0f} MB "
        f"JSONL ({dups:,} duplicates, {bad:,} bad records)"
    )

    seconds, rss, code, tail = measured(srt_argv("import", str(data), "--db", str(db)), env)
    if code != 0:
        raise SystemExit(f"srt import failed ({code}):\n{tail}")
    rate = args.pairs / seconds
    print(
        f"import        {seconds:7.1f} s  {rate:,.0f} records/s "
        f"[{verdict(rate >= TARGETS['import'])}: >= 50,000]  peak RSS {rss:,.0f} MB "
        f"[{verdict(rss <= TARGETS['rss_mb'])}: <= 1 GB]"
    )
    print(
        f"              import CPU {LAST_CPU[0]:.1f} s: {args.pairs / LAST_CPU[0]:,.0f} records "
        "per CPU-second (all threads)"
    )
    print(f"store         {store_size(db) / 1e6:,.0f} MB on disk after import")

    # In a child: a child's peak RSS starts at its parent's (Linux carries the high-water mark
    # across fork and exec), so this process stays small for the children measured after it.
    seconds, _, code, tail = measured([sys.executable, __file__, "--synthetic-run", str(db)], env)
    if code != 0:
        raise SystemExit(f"the synthetic run failed ({code}):\n{tail}")
    run_id = int(result_line(tail)[0])
    print(
        f"synthetic run {seconds:7.1f} s  run {run_id}: SYNTHETIC versions, teacher calls, "
        "scores and decisions (no model)"
    )
    print(f"store         {store_size(db) / 1e6:,.0f} MB on disk with the run")

    seconds, _, code, tail = measured(
        [sys.executable, "-c", STATUS_CHILD, str(db), str(run_id)], env
    )
    engine_s, engine_cpu = (float(x) for x in result_line(tail)[:2])
    cli_s, _, code, tail = measured(srt_argv("status", str(run_id), "--db", str(db)), env)
    cli_cpu = LAST_CPU[0]
    if code != 0:
        raise SystemExit(f"srt status failed ({code}):\n{tail}")
    print(
        f"status        run_status {engine_s:.3f} s [{verdict(engine_s <= TARGETS['status_s'])}: "
        f"<= 1 s] (CPU {engine_cpu:.3f} s, all threads); `srt status` command {cli_s:.3f} s "
        f"wall, CPU {cli_cpu:.3f} s, Python start-up included"
    )

    seconds, _, code, tail = measured(
        [sys.executable, "-c", BROWSE_CHILD, str(db), str(run_id)], env
    )
    opened, page, deep, rows, total, page_cpu = result_line(tail)
    print(
        f"browse        first page {float(page):.3f} s [{verdict(float(page) <= TARGETS['browse_s'])}"
        f": <= 1 s] (CPU {float(page_cpu):.3f} s; {rows} of {int(total):,} rows; store opened "
        f"in {float(opened):.3f} s); "
        f"page at offset 500,000 sorted by IFD {float(deep):.3f} s"
    )

    out.parent.mkdir(parents=True, exist_ok=True)
    argv = srt_argv("export", str(run_id), "--format", "alpaca", "--out", str(out), "--db", str(db))
    seconds, rss, code, tail = measured(argv, env)
    if code != 0:
        raise SystemExit(f"srt export failed ({code}):\n{tail}")
    with out.open("rb") as f:
        lines = sum(1 for _ in f)
    print(
        f"export        {seconds:7.1f} s  {lines:,} rows, {out.stat().st_size / 1e6:,.0f} MB  "
        f"peak RSS {rss:,.0f} MB [{verdict(rss <= TARGETS['rss_mb'])}: <= 1 GB], "
        f"CPU {LAST_CPU[0]:.1f} s"
    )
    print(f"machine       {os.cpu_count()} cores; {load()} at the end")
    if args.ray:
        # Scoring on Ray actors: bench_ray.py prints its own rows (workers, pairs/s, efficiency).
        bench_ray = Path(__file__).with_name("bench_ray.py")
        subprocess.run([sys.executable, str(bench_ray), "--n", str(args.ray_pairs)], check=False)
    else:
        print("ray           not measured (add --ray)")
    if not args.keep and args.dir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
