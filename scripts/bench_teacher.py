"""How close the Ollama teacher comes to the ideal stage time, against a server of fixed latency.

    .venv/bin/python scripts/bench_teacher.py [--n 200] [--concurrency 8] [--latency 0.2]

The server (tests/ollama_server.py) answers every chat request after `latency` seconds and runs
`concurrency` requests at once, like an Ollama with OLLAMA_NUM_PARALLEL=concurrency. With no
overhead a stage of N reflections takes N x latency / concurrency; the ratio of the measured wall
time to that is the teacher's overhead (prompting, HTTP, streaming, parsing). Target: <= 1.1.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from srt_local.config import TeacherOptions, TeacherSpec  # noqa: E402
from srt_local.pairs import Pair  # noqa: E402
from srt_local.teachers.ollama import OllamaTeacher  # noqa: E402
from tests.ollama_server import OllamaTestServer  # noqa: E402

TARGET = 1.1


def pairs(n: int) -> list[Pair]:
    """Distinct pairs of realistic size (a few hundred characters each)."""
    return [
        Pair(
            f"Explain step {i} of setting up a small vegetable garden on a balcony, "
            "including soil, light and watering.",
            "" if i % 3 else f"Balcony faces {'north' if i % 2 else 'south'}; 4 square metres.",
            f"Step {i}: choose containers with drainage holes, fill them with potting mix, "
            "place them where they get at least six hours of sun, and water when the top "
            "centimetre of soil is dry. " * 2,
        )
        for i in range(n)
    ]


async def bench(
    n: int, concurrency: int, latency: float, stage: str, output: str, stream: bool
) -> float:
    # Four streamed parts a reply: the client's cost, not the test server's one-part-per-token.
    with OllamaTestServer(latency=latency, parallel=concurrency, parts=4) as server:
        spec = TeacherSpec(
            name="bench",
            backend="ollama",
            model=server.model,
            host=server.url,
            output=output,
            timeout=60.0,
            options=TeacherOptions(num_ctx=4096, num_predict=1024),
        )
        teacher = await OllamaTeacher.open(spec, concurrency=concurrency, stream=stream)
        try:
            started = time.perf_counter()
            results = await asyncio.gather(*(teacher.reflect(stage, p) for p in pairs(n)))
            wall = time.perf_counter() - started
        finally:
            await teacher.aclose()
        peak = server.peak_in_flight
    failed = [r.outcome for r in results if r.outcome != "ok"]
    per_call = [
        (c.finished_at - c.started_at).total_seconds() - latency for r in results for c in r.calls
    ]
    ideal = n * latency / concurrency
    ratio = wall / ideal
    print(
        f"stage={stage} output={output} stream={stream} n={n} concurrency={concurrency} "
        f"latency={latency:g}s"
    )
    print(
        f"wall {wall:.3f}s, ideal {ideal:.3f}s, {n / wall:.1f} calls/s, peak in flight {peak}, "
        f"failed {len(failed)}, median overhead per call {statistics.median(per_call) * 1e3:.1f} ms"
    )
    print(f"ratio {ratio:.3f} (target <= {TARGET}): {'ok' if ratio <= TARGET else 'OVER TARGET'}")
    return ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="reflections (default 200)")
    parser.add_argument("--concurrency", type=int, default=8, help="in flight (default 8)")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per request")
    parser.add_argument("--stage", choices=["instruction", "response"], default="instruction")
    parser.add_argument("--output", choices=["markers", "json"], default="markers")
    parser.add_argument("--no-stream", action="store_true", help="non-streaming requests")
    parser.add_argument("--check", action="store_true", help="exit 1 when over the target")
    args = parser.parse_args()
    ratio = asyncio.run(
        bench(args.n, args.concurrency, args.latency, args.stage, args.output, not args.no_stream)
    )
    return 1 if args.check and ratio > TARGET else 0


if __name__ == "__main__":
    sys.exit(main())
