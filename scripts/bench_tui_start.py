#!/usr/bin/env python3
"""How long `srt tui` takes to its first paint, and how long importing the app takes.

    .venv/bin/python scripts/bench_tui_start.py [--runs 5] [--db PATH]

Each run is a fresh Python process (cold imports, warm file cache) that imports the store and the
app, opens the store and runs the app headless until its first frame is drawn; the wall time from
starting the process (interpreter start included) to that frame is printed, with the import time
of the store and the app alone.
Target: first paint <= 1 s (the median of the runs). On a shared, loaded machine the wall time
is inflated by waiting for a core: the CPU time to the first paint is printed too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 1.0

CHILD = """
import os, sys, time
from pathlib import Path
started = time.perf_counter()
from srt_local.store import Store
from tui.app import SrtApp
imported = time.perf_counter() - started


class FirstPaint(SrtApp):
    CSS_PATH = sys.argv[2]

    def on_mount(self) -> None:
        super().on_mount()
        self.call_after_refresh(self.painted)

    def painted(self) -> None:
        # Wall time since the parent started this process (its clock, passed in argv), and the
        # CPU time this process used (what the wall time is on an idle machine).
        cpu = sum(os.times()[:2])
        print(f"{time.time() - float(sys.argv[3]):.3f} {imported:.3f} {cpu:.3f}", flush=True)
        self.exit()


with Store.open(Path(sys.argv[1])) as store:
    FirstPaint(store, theme="dark").run(headless=True, size=(100, 30))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--db", type=Path, default=None, help="a store (default: a new empty one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "srt.duckdb"
        # A file, not `python -c`: Textual finds a subclass's CSS through its source file.
        child = Path(tmp) / "first_paint.py"
        child.write_text(CHILD)
        paints, imports, cpus = [], [], []
        for _ in range(args.runs):
            out = subprocess.run(
                [
                    sys.executable,
                    str(child),
                    str(db),
                    str(REPO / "tui" / "app.tcss"),
                    repr(time.time()),
                ],
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO), "SRT_HOME": tmp},
                capture_output=True,
                text=True,
                check=True,
            )
            paint, imported, cpu = out.stdout.strip().splitlines()[-1].split()
            paints.append(float(paint))
            imports.append(float(imported))
            cpus.append(float(cpu))
    paint, imported = statistics.median(paints), statistics.median(imports)
    print(
        f"first paint: median {paint:.2f} s of {args.runs} ({', '.join(f'{p:.2f}' for p in paints)})"
    )
    print(f"importing the store and the app: median {imported:.2f} s")
    cpu = statistics.median(cpus)
    print(f"CPU time to the first paint: median {cpu:.2f} s (the wall time on an idle machine)")
    verdict = "ok" if paint <= TARGET_S else "OVER TARGET"
    print(f"target <= {TARGET_S:.1f} s: {verdict}")


if __name__ == "__main__":
    main()
