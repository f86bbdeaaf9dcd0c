"""How close the Ollama teacher comes to the ideal stage time, against a server of fixed latency;
with --embedded, the embedded teacher's replies/s at concurrency 1 and 4.

    .venv/bin/python scripts/bench_teacher.py [--n 200] [--concurrency 8] [--latency 0.2]
    .venv/bin/python scripts/bench_teacher.py --embedded [--n 8] [--reference]

--embedded runs the shipped embedded teacher (the real SmolLM2 GGUF, its models.toml options) on
`n` distinct pairs at concurrency 1 and then 4, and prints replies/s, generated tokens/s and the
CPU seconds used, and whether both gave the same replies. --reference also times
llama-cpp-python's create_chat_completion one request at a time on the same prompts (the
embedded teacher before batched decoding). Target: concurrency 4 >= 2x the replies/s of 1.

The server (tests/ollama_server.py) answers every chat request after `latency` seconds and runs
`concurrency` requests at once, like an Ollama with OLLAMA_NUM_PARALLEL=concurrency. With no
overhead a stage of N reflections takes N x latency / concurrency; the ratio of the measured wall
time to that is the teacher's overhead (prompting, HTTP, streaming, parsing). Target: <= 1.1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from srt_local.config import TeacherOptions, TeacherSpec  # noqa: E402
from srt_local.pairs import Pair  # noqa: E402
from srt_local.teachers.ollama import OllamaTeacher  # noqa: E402
from tests.ollama_server import OllamaTestServer  # noqa: E402

TARGET = 1.1
EMBEDDED_TARGET = 2.0  # concurrency 4 against concurrency 1, replies/s


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


async def bench_embedded(n: int, stage: str, widths: list[int]) -> dict[int, float]:
    """Replies/s of the embedded teacher at each concurrency in `widths`."""
    from srt_local.config import load_models
    from srt_local.teachers.llamacpp import LlamaCppTeacher

    config = load_models()
    spec = config.teacher(config.defaults.embedded_teacher)
    rates: dict[int, float] = {}
    cpus: dict[int, float] = {}
    replies: dict[int, list[str | None]] = {}
    for width in widths:
        teacher = await LlamaCppTeacher.open(spec, concurrency=width)
        try:
            options = teacher.options_for(0)
            prompts = [_prompt(stage, p, spec.output, teacher.schema_chars) for p in pairs(n)]
            wall, cpu = time.perf_counter(), time.process_time()
            gens = await asyncio.gather(*(teacher._send(p, options) for p in prompts))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            await teacher.aclose()
        tokens = sum(g.eval_count or 0 for g in gens)
        errors = sum(g.error_kind is not None for g in gens)
        rates[width] = n / wall
        cpus[width] = cpu
        replies[width] = [g.text for g in gens]
        print(
            f"embedded {spec.name} ({spec.output}, num_predict {options['num_predict']}) "
            f"concurrency {width}: {n} replies in {wall:.1f} s = {n / wall:.3f} replies/s, "
            f"{tokens / wall:.1f} tokens/s, {tokens} tokens, CPU {cpu:.1f} s, errors {errors}"
        )
    first = widths[0]
    cores = len(os.sched_getaffinity(0))
    for width in widths[1:]:
        same = replies[width] == replies[first]
        # With every core busy all the time, concurrency `width` takes its CPU seconds / cores.
        ceiling = (cpus[width] / cores) * rates[first] / n
        print(
            f"concurrency {width} vs {first}: {rates[width] / rates[first]:.2f}x replies/s; "
            f"same replies: {'yes' if same else 'NO'}; the most {cores} cores allow at "
            f"{width}'s CPU seconds: {1 / ceiling:.2f}x"
        )
    return rates


def bench_reference(n: int, stage: str) -> float:
    """Replies/s of llama-cpp-python's create_chat_completion, one request at a time (the
    embedded teacher's path before batched decoding), with the same prompts and options."""
    from llama_cpp import Llama

    from srt_local.config import load_models
    from srt_local.model_files import resolve_gguf
    from srt_local.teachers.llamacpp import LlamaCppTeacher, default_threads

    config = load_models()
    spec = config.teacher(config.defaults.embedded_teacher)
    threads = spec.n_threads or default_threads()
    llama = Llama(
        model_path=str(resolve_gguf(spec.path, spec.package)),
        chat_format="chat_template.default",
        n_ctx=spec.options.num_ctx,
        n_threads=threads,
        n_threads_batch=threads,
        seed=spec.options.seed,
        verbose=False,
    )
    options = {**LlamaCppTeacher.default_options, **spec.options.as_dict()}
    budget = max(64, 3 * (int(options["num_predict"]) - 32))
    tokens = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for pair in pairs(n):
        prompt = _prompt(stage, pair, spec.output, budget)
        fmt = {"type": "json_object", "schema": prompt.schema} if prompt.schema else None
        reply = llama.create_chat_completion(
            messages=prompt.messages,  # type: ignore[arg-type]
            temperature=options["temperature"],
            seed=options["seed"],
            max_tokens=options["num_predict"],
            repeat_penalty=options["repeat_penalty"],
            response_format=fmt,  # type: ignore[arg-type]
        )
        tokens += reply["usage"]["completion_tokens"]  # type: ignore[index]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    llama.close()
    print(
        f"reference create_chat_completion, one at a time: {n} replies in {wall:.1f} s = "
        f"{n / wall:.3f} replies/s, {tokens / wall:.1f} tokens/s, CPU {cpu:.1f} s"
    )
    return n / wall


def _prompt(stage: str, pair: Pair, output: str, budget: int | None) -> Any:
    from srt_local.prompts import build_prompt

    return build_prompt(stage, pair, output, budget if output == "json" else None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="reflections (default 200)")
    parser.add_argument("--concurrency", type=int, default=8, help="in flight (default 8)")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per request")
    parser.add_argument("--stage", choices=["instruction", "response"], default="instruction")
    parser.add_argument("--output", choices=["markers", "json"], default="markers")
    parser.add_argument("--no-stream", action="store_true", help="non-streaming requests")
    parser.add_argument("--check", action="store_true", help="exit 1 when over the target")
    parser.add_argument(
        "--embedded", action="store_true", help="the embedded teacher at concurrency 1 and 4"
    )
    parser.add_argument(
        "--reference", action="store_true", help="with --embedded: also the unbatched path"
    )
    args = parser.parse_args()
    if args.embedded:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        n = args.n if args.n != 200 else 8
        rates = asyncio.run(bench_embedded(n, args.stage, [1, 4]))
        if args.reference:
            reference = bench_reference(n, args.stage)
            print(f"concurrency 4 vs the unbatched path: {rates[4] / reference:.2f}x replies/s")
        return 1 if args.check and rates[4] < EMBEDDED_TARGET * rates[1] else 0
    ratio = asyncio.run(
        bench(args.n, args.concurrency, args.latency, args.stage, args.output, not args.no_stream)
    )
    return 1 if args.check and ratio > TARGET else 0


if __name__ == "__main__":
    sys.exit(main())
