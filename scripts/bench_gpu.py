"""The GPU student against the hardware and against PyTorch, in one run (README "GPU").

For each student (Gemma-3-270M's shape, synthetic 1B and 8B) it prints target tokens/s of the
scorer's host path (logits rows copied out, log-softmax in numpy) and device path (log p(target)
reduced inside llama.cpp's graph), and of the same token sequences scored by HF transformers in
bf16: batched the strongest plain way (sorted by length, SDPA, the output matrix applied to target
positions only, log-softmax on the GPU) and one sample at a time with `labels` (the IFD paper's
code). Each as a fraction of the compute limit: 2 x matrix parameters x decoded tokens per second
over the card's bf16 matrix rate, measured here with torch (attention is not counted). Then the
batch-invariance check on the GPU: the largest difference of a text's mean loss scored alone and
packed, for kv_align 16 and 1024, and run to run; and host path against device path (run first, on
the first model, so that a short call still answers whether the device path is right there).

    python3 scripts/bench_gpu.py                 # on the GPU machine, after scripts/device_build.sh
    .venv/bin/python scripts/bench_gpu.py --smoke  # here: tiny shapes, CPU, HF rows if torch exists

The texts are made-up token sequences shaped like instruction pairs (the 4 sequences the scorer
decodes per pair); speed does not depend on their content. The synthetic models are written by
scripts/synthetic_gguf.py (random weights; the real Gemma file is too big to travel).
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import synthetic_gguf  # noqa: E402

from srt_local.logprobs import EngineSettings, Job, LlamaEngine  # noqa: E402

TEMPLATE = 40  # tokens a prompt template adds around x (or around y, reversed)


@dataclass
class Row:
    model: str
    way: str
    target_per_s: float | None = None
    decoded_per_s: float | None = None
    fraction: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def make_jobs(n_pairs: int, n_vocab: int, bos: int, seed: int = 0) -> list[Job]:
    """Four sequences per made-up pair: y|x, y, x|y, x (BOS first), Alpaca-like lengths."""
    rng = np.random.default_rng(seed)
    top = min(n_vocab - 8, 1600)  # ids of ordinary tokens in every vocabulary used here
    jobs: list[Job] = []
    for _ in range(n_pairs):
        x = rng.integers(8, top, int(rng.integers(10, 120))).tolist()
        y = rng.integers(8, top, int(rng.integers(20, 420))).tolist()
        t = rng.integers(8, top, TEMPLATE).tolist()
        forward = [bos, *t, *x]
        reverse = [bos, *t, *y]
        jobs += [
            Job((*forward, *y), len(forward)),
            Job((bos, *y), 1),
            Job((*reverse, *x), len(reverse)),
            Job((bos, *x), 1),
        ]
    return jobs


def counts(jobs: list[Job]) -> tuple[int, int]:
    return sum(j.n_target for j in jobs), sum(j.n_decoded for j in jobs)


def timed(
    run: Callable[[list[Job]], None], jobs: list[Job], budget_s: float, step: int = 64
) -> tuple[float, int]:
    """Seconds and jobs done: `run` over slices of jobs until the budget is spent."""
    done = 0
    started = time.perf_counter()
    while done < len(jobs):
        run(jobs[done : done + step])
        done += step
        if time.perf_counter() - started > budget_s:
            break
    return time.perf_counter() - started, min(done, len(jobs))


def budget(args: Any) -> float:
    """Seconds for the next measurement: --budget, less when --time-limit is running out."""
    args.left -= 1
    if args.deadline is None:
        return float(args.budget)
    remaining = args.deadline - time.monotonic()
    # Half of what is left, shared by the measurements still to come (loads take the rest).
    return max(1.0, min(args.budget, remaining / 2 / max(1, args.left + 1)))


def peak_bf16(torch: Any) -> float:
    """FLOP/s of an 8192^3 bf16 matrix product on random data (mean of 10 after 3 warm-ups)."""
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    return 10 * 2 * n**3 / (time.perf_counter() - start)


def llama_rows(
    name: str, path: Path, params: int, jobs: list[Job], peak: float | None, args: Any
) -> list[Row]:
    rows: list[Row] = []
    for way in ("host", "device"):
        settings = EngineSettings(n_ctx=2048, scoring_path=way, n_threads=args.threads)
        try:
            engine = LlamaEngine(path, settings)
        except Exception as exc:
            rows.append(Row(name, f"llama.cpp {way}", note=f"failed: {exc}"))
            continue
        try:
            engine.score(jobs[:8])  # warm-up: graphs, buffers
            seconds, n = timed(engine.score, jobs, budget(args))
            target, decoded = counts(jobs[:n])
            r = engine.resolved
            rows.append(
                Row(
                    name,
                    f"llama.cpp {engine.scoring_path}",
                    target / seconds,
                    decoded / seconds,
                    2 * params * decoded / seconds / peak if peak else None,
                    f"{n} seqs; n_batch {r.n_batch}, rows {r.max_outputs}, "
                    f"fixed {r.fixed_shape}, gpu {r.on_gpu}",
                )
            )
        finally:
            engine.close()
    return rows


def hf_model(preset: str, torch: Any) -> Any:
    """A LlamaForCausalLM of the preset's shape, random bf16 weights, on the GPU."""
    from transformers import LlamaConfig, LlamaForCausalLM

    s = synthetic_gguf.PRESETS[preset]
    config = LlamaConfig(
        vocab_size=s.n_vocab,
        hidden_size=s.n_embd,
        intermediate_size=s.n_ff,
        num_hidden_layers=s.n_layer,
        num_attention_heads=s.n_head,
        num_key_value_heads=s.n_head_kv,
        head_dim=s.head,
        max_position_embeddings=4096,
        tie_word_embeddings=s.tied,
    )
    config._attn_implementation = "sdpa"
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(dtype=torch.bfloat16)
    return model.eval()


def hf_rows(
    name: str, preset: str, params: int, jobs: list[Job], peak: float | None, args: Any
) -> list[Row]:
    try:
        import torch
    except ImportError:
        return [Row(name, "HF bf16", note="skipped: torch is not installed here")]
    if not torch.cuda.is_available():
        return [Row(name, "HF bf16", note="skipped: no CUDA device")]
    held = {"model": hf_model(preset, torch)}  # dropped at the end, so the GPU memory goes too

    @torch.inference_mode()
    def batched(chunk: list[Job]) -> None:
        # Sorted by length, padded right, SDPA; the output matrix only where a target is.
        order = sorted(chunk, key=lambda j: j.n_decoded)
        for k in range(0, len(order), args.hf_batch):
            part = order[k : k + args.hf_batch]
            width = max(j.n_decoded for j in part)
            ids = torch.zeros(len(part), width, dtype=torch.long)
            mask = torch.zeros(len(part), width, dtype=torch.long)
            want = torch.zeros(len(part), width, dtype=torch.bool)
            target = torch.zeros(len(part), width, dtype=torch.long)
            for b, j in enumerate(part):
                n = j.n_decoded
                ids[b, :n] = torch.tensor(j.tokens[:n])
                mask[b, :n] = 1
                want[b, j.start - 1 : n] = True
                target[b, : n - 1] = torch.tensor(j.tokens[1:n])
                target[b, n - 1] = j.tokens[n]
            ids, mask, want, target = (t.cuda() for t in (ids, mask, want, target))
            hidden = held["model"].model(input_ids=ids, attention_mask=mask).last_hidden_state
            picked = hidden[want]
            head = held["model"].get_output_embeddings().weight
            for lo in range(0, picked.shape[0], 4096):
                logits = (picked[lo : lo + 4096] @ head.T).float()
                logp = torch.log_softmax(logits, dim=-1)
                logp.gather(1, target[want][lo : lo + 4096, None]).sum().item()

    @torch.inference_mode()
    def one_at_a_time(chunk: list[Job]) -> None:
        for j in chunk:
            ids = torch.tensor([j.tokens], device="cuda")
            labels = ids.clone()
            labels[0, : j.start] = -100
            held["model"](input_ids=ids, labels=labels).loss.item()

    rows: list[Row] = []
    # The batched peer sorts 256 sequences at a time by length (little padding).
    for way, run, step in (
        ("HF bf16 batched", batched, 256),
        ("HF bf16 one at a time", one_at_a_time, 64),
    ):
        run(jobs[:4])
        torch.cuda.synchronize()
        seconds, n = timed(run, jobs, budget(args), step)
        target, decoded = counts(jobs[:n])
        rows.append(
            Row(
                name,
                way,
                target / seconds,
                decoded / seconds,
                2 * params * decoded / seconds / peak if peak else None,
                f"{n} seqs",
            )
        )
    held.clear()
    gc.collect()
    torch.cuda.empty_cache()
    return rows


def invariance(path: Path, jobs: list[Job], args: Any) -> list[Row]:
    """Largest |mean loss alone - mean loss packed| over jobs, per kv_align; and run to run."""
    rows: list[Row] = []

    def losses(**settings: Any) -> np.ndarray:
        engine = LlamaEngine(path, EngineSettings(n_ctx=2048, n_threads=args.threads, **settings))
        try:
            sums = engine.score(jobs)
        finally:
            engine.close()
        return np.array([-(s or np.nan) / j.n_target for s, j in zip(sums, jobs, strict=True)])

    for align, seqs in ((16, 0), (1024, 4)):
        alone = losses(kv_align=align, n_seq_max=1)
        packed = losses(kv_align=align, n_seq_max=seqs)
        again = losses(kv_align=align, n_seq_max=seqs)
        rows.append(
            Row(
                path.stem,
                f"invariance kv_align {align}",
                note=f"max |alone - packed| {np.nanmax(np.abs(alone - packed)):.3g}; "
                f"run to run {np.nanmax(np.abs(packed - again)):.3g} ({len(jobs)} seqs)",
                extra={
                    "alone_vs_packed": float(np.nanmax(np.abs(alone - packed))),
                    "run_to_run": float(np.nanmax(np.abs(packed - again))),
                },
            )
        )
    host = losses(scoring_path="host")
    device = losses(scoring_path="device")
    rows.append(
        Row(
            path.stem,
            "host vs device path",
            note=f"max |host - device| {np.nanmax(np.abs(host - device)):.3g}",
            extra={"host_vs_device": float(np.nanmax(np.abs(host - device)))},
        )
    )
    return rows


def print_rows(rows: list[Row]) -> None:
    for r in rows:
        rate = f"{r.target_per_s:>12,.0f} target tok/s" if r.target_per_s else " " * 25
        frac = f"{100 * r.fraction:6.1f}% of limit" if r.fraction is not None else " " * 16
        print(f"{r.model:<14} {r.way:<26} {rate}  {frac}  {r.note}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/srt-bench"), help="GGUFs go here")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--pairs", type=int, default=256, help="made-up pairs (4 sequences each)")
    parser.add_argument("--budget", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--hf-batch", type=int, default=32, help="sequences per HF batch")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--models", default="gemma270m,8b,1b", help="presets to run, comma-separated"
    )
    parser.add_argument(
        "--time-limit", type=float, default=0, help="seconds for the whole run (0: no limit)"
    )
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    args.deadline = time.monotonic() + args.time_limit if args.time_limit else None
    args.left = 4 * len(args.models.split(","))
    if args.smoke:
        args.pairs, args.budget = min(args.pairs, 8), min(args.budget, 5.0)
    peak = None
    try:
        import torch

        if torch.cuda.is_available():
            peak = peak_bf16(torch)
            print(f"bf16 matrix rate: {peak / 1e12:.0f} TFLOP/s ({torch.cuda.get_device_name()})")
    except ImportError:
        print("torch is not installed: no compute limit, no HF rows")
    rows: list[Row] = []
    for preset in args.models.split(","):
        shape_name = "tiny" if args.smoke else preset
        kind = "q8_0" if preset == "gemma270m" else "f16"
        path = args.dir / f"{shape_name}-{kind}.gguf"
        if not path.exists():
            started = time.perf_counter()
            synthetic_gguf.write(shape_name, path, kind)
            print(f"wrote {path} in {time.perf_counter() - started:.0f} s", flush=True)
        shape = synthetic_gguf.PRESETS[shape_name]
        bos = shape.n_vocab - 2  # synthetic_gguf's BOS
        jobs = make_jobs(args.pairs, shape.n_vocab, bos)
        label = f"{preset}{' (tiny)' if args.smoke else ''}"
        parts: list[Callable[[], list[Row]]] = [
            functools.partial(llama_rows, label, path, shape.n_params, jobs, peak, args),
            functools.partial(hf_rows, label, shape_name, shape.n_params, jobs, peak, args),
        ]
        if preset == args.models.split(",")[0]:
            # First, on the smallest model: whether the device path is right on this backend.
            check = jobs[: 64 if not args.smoke else 16]
            parts.insert(0, functools.partial(invariance, path, check, args))
        for part in parts:
            if args.deadline is not None and time.monotonic() > args.deadline - 15:
                print(f"{label}: skipped, --time-limit reached", flush=True)
                break
            try:
                new = part()
            except Exception as exc:  # one broken row must not cost the others the device call
                new = [Row(label, "error", note=f"{type(exc).__name__}: {exc}"[:300])]
            print_rows(new)
            rows += new
        if not args.smoke and preset == "8b":
            path.unlink()  # 16 GB: the disk is 64 GB
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_gpu.json").write_text(json.dumps([r.__dict__ for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    raise SystemExit(main())
