"""The report as one self-contained HTML file: inline CSS and inline SVG, no script, no link to
anything, so it opens offline and can be mailed. Every stored text is escaped: it is data."""

from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path
from typing import Any

from srt_local.judge.results import JudgedComparison
from srt_local.judge.stats import LengthControlled, WinRate
from srt_local.pairs import Pair
from srt_local.report import svg
from srt_local.report.figures import IFD_THRESHOLD, RIFD_THRESHOLD, ExampleView, ReportData

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0 1em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.headline { font-size: 1.25em; margin: .3em 0; }
.note { color: #555; font-size: .92em; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; margin-bottom: 1.5em; }
.pair > div { border: 1px solid #ddd; border-radius: 4px; padding: .6em; background: #fafafa; }
pre { white-space: pre-wrap; word-break: break-word; margin: .2em 0; font: 13px/1.4 ui-monospace, monospace; }
svg { max-width: 100%; height: auto; display: block; margin: .5em 0; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _num(value: float | None, fmt: str = "{:.3f}") -> str:
    return "–" if value is None or math.isnan(value) else fmt.format(value)


def _table(head: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    out = ["<table><tr>", *(f"<th>{_e(h)}</th>" for h in head), "</tr>"]
    for row in rows:
        cells = "".join(
            f'<td class="num">{_e(v)}</td>' if i in numeric else f"<td>{_e(v)}</td>"
            for i, v in enumerate(row)
        )
        out.append(f"<tr>{cells}</tr>")
    out.append("</table>")
    return "".join(out)


def _rate(rate: WinRate) -> str:
    return (
        f"{_num(rate.win_rate, '{:.1%}')} [{_num(rate.low, '{:.1%}')}, {_num(rate.high, '{:.1%}')}]"
    )


def _figure(name: str, value: float, low: float | None = None, high: float | None = None) -> str:
    """A machine-readable figure: the report's numbers can be read back from the file."""
    attrs = f'data-figure="{_e(name)}" data-value="{value!r}"'
    if low is not None and high is not None:
        attrs += f' data-low="{low!r}" data-high="{high!r}"'
    return f"<span {attrs}></span>"


def _lc(lc: LengthControlled | None) -> str:
    if lc is None:
        return "–"
    return f"{_num(lc.win_rate, '{:.1%}')} [{_num(lc.low, '{:.1%}')}, {_num(lc.high, '{:.1%}')}]"


def _lc_figure(name: str, lc: LengthControlled | None) -> str:
    if lc is None:
        return _figure(name, float("nan"))
    return _figure(name, lc.win_rate, lc.low, lc.high)


def _settings(d: ReportData) -> str:
    r = d.run
    rows = [
        ["run", r["run_id"]],
        ["dataset", f"{r['dataset']} ({r['n_imported']} samples, {r['source_path']})"],
        ["dataset sha256", r["source_sha256"]],
        ["status", r["status"]],
        ["teacher", f"{r['teacher_name']} ({r['teacher_key']})"],
        ["student", f"{r['student_name']} (sha256 {r['student_sha256']})"],
        ["template / max tokens", f"{r['template']} / {r['max_tokens']}"],
        ["sample limit", r["sample_limit"] if r["sample_limit"] is not None else "all"],
        ["emit unreflected", r["emit_unreflected"]],
        ["created / finished", f"{r['created_at']} / {r['finished_at'] or '–'}"],
    ]
    parts = ["<h2>Run settings and provenance</h2>", _table(["setting", "value"], rows)]
    if d.teachers:
        parts.append("<h3>Teacher calls</h3>")
        parts.append(
            _table(
                [
                    "teacher",
                    "backend",
                    "model",
                    "digest",
                    "host",
                    "output",
                    "prompts",
                    "calls",
                    "ok",
                ],
                [
                    [
                        t["teacher_name"],
                        t["backend"],
                        t["model"],
                        t["model_digest"],
                        t["host"],
                        t["output_mode"],
                        t["prompt_versions"],
                        t["calls"],
                        t["ok"],
                    ]
                    for t in d.teachers
                ],
                {7, 8},
            )
        )
    if d.judges:
        parts.append("<h3>Judge calls</h3>")
        parts.append(
            _table(
                [
                    "judge",
                    "backend",
                    "model",
                    "digest",
                    "host",
                    "prompt",
                    "against",
                    "seed",
                    "calls",
                    "ok",
                ],
                [
                    [
                        j["judge_name"],
                        j["backend"],
                        j["model"],
                        j["model_digest"],
                        j["host"],
                        j["prompt_version"],
                        j["against"],
                        j["seed"],
                        j["calls"],
                        j["ok"],
                    ]
                    for j in d.judges
                ],
                {7, 8, 9},
            )
        )
    config = json.dumps(r["config"], indent=1, sort_keys=True, default=str)
    parts.append(f"<details><summary>run configuration</summary><pre>{_e(config)}</pre></details>")
    return "\n".join(parts)


def _selection(d: ReportData) -> str:
    rejected = d.decided - d.kept
    parts = [
        "<h2>Branches, kept and rejected</h2>",
        f'<p class="headline">{d.kept} kept, {rejected} rejected of {d.decided} decided '
        f"{_figure('kept', d.kept)}{_figure('rejected', rejected)}</p>",
        f'<p class="note">Kept is what <code>srt export</code> writes. Overrides: '
        f"{d.overridden_by_person} by a person, {d.overridden_by_judge} by the judge "
        "(a person's override wins).</p>",
        _table(
            ["branch", "decided", "kept"],
            [[b, n, k] for b, n, k in d.branches],
            {1, 2},
        ),
        svg.grouped_counts(
            "Samples by branch", [(b, (n, k)) for b, n, k in d.branches], ["decided", "kept"]
        ),
        "<h3>Why</h3>",
        _table(["reason", "samples"], [[r, n] for r, n in d.reasons], {1}),
    ]
    return "\n".join(parts)


def _distributions(d: ReportData) -> str:
    ifd = svg.histogram(
        "IFD: original vs reflected instruction",
        [("original", d.ifd_ori), ("reflected Q", d.ifd_reflected), ("kept", d.ifd_kept)],
        [IFD_THRESHOLD],
    )
    rifd = svg.histogram(
        "r-IFD: base vs reflected response",
        [("base", d.rifd_base), ("reflected A/QA", d.rifd_reflected), ("kept", d.rifd_kept)],
        [RIFD_THRESHOLD],
    )
    return (
        "<h2>IFD and r-IFD</h2>"
        f'<p class="note">A kept sample needs IFD &lt; {IFD_THRESHOLD:g} and r-IFD &lt; '
        f"{RIFD_THRESHOLD:g} (dashed lines). Counts: {len(d.ifd_ori)} original IFD, "
        f"{len(d.ifd_reflected)} reflected IFD, {len(d.rifd_base)} base r-IFD, "
        f"{len(d.rifd_reflected)} reflected r-IFD.</p>"
        f'<div class="charts">{ifd}{rifd}</div>'
    )


def _comparison(c: JudgedComparison) -> str:
    s = c.summary
    o = s.overall
    lc = s.length_controlled
    tag = f"winrate-{c.against}"
    rows = (
        [("overall", o)]
        + [(f"branch {k}", v) for k, v in s.by_branch.items()]
        + [(f"IFD {k}", v) for k, v in s.by_band.items()]
    )
    parts = [
        f"<h3>Selected vs {_e(c.against)} — judge {_e(c.judge)}</h3>",
        f'<p class="headline">win rate {_rate(o)} '
        f"({o.wins} win / {o.ties} tie / {o.losses} loss of {o.n})"
        f"{_figure(tag, o.win_rate, o.low, o.high)}</p>",
        f"<p>length-controlled win rate {_lc(lc)}{_lc_figure(tag + '-lc', lc)}; "
        f"response length difference (selected − {_e(c.against)}): mean "
        f"{_num(s.mean_length_diff, '{:+.0f}')}, median {_num(s.median_length_diff, '{:+.0f}')} "
        f"characters; the two orders agree on {_num(s.consistency, '{:.0%}')} of samples"
        f"{_figure(tag + '-consistency', s.consistency)}; the example shown first won "
        f"{_num(s.first_position_wins, '{:.0%}')} of orders.</p>",
        f'<p class="note">A sample wins when it wins both orders or wins one and ties the other; '
        f"ties count half. 95% interval: percentile bootstrap over samples, {o.n_boot} resamples, "
        f"seed {c.boot_seed}. {'Random draw seed ' + str(c.seed) + '. ' if c.against == 'random' else ''}"
        f"{c.incomplete} samples left out (an order without a verdict). Judge key {_e(c.judge_key)}.</p>",
        _table(
            ["group", "n", "win", "tie", "loss", "win rate [95% CI]"],
            [[name, r.n, r.wins, r.ties, r.losses, _rate(r)] for name, r in rows],
            {1, 2, 3, 4},
        ),
        svg.win_rates(
            f"Win rate vs {c.against}",
            [(name, r.win_rate, r.low, r.high, r.n) for name, r in rows],
        ),
    ]
    return "\n".join(parts)


def _judge(d: ReportData) -> str:
    if not d.comparisons:
        return (
            "<h2>Does the selection help?</h2><p>Not judged yet: run "
            f"<code>srt judge {d.run['run_id']}</code> (and <code>--against random</code> for "
            "the control).</p>"
        )
    return "<h2>Does the selection help?</h2>" + "\n".join(_comparison(c) for c in d.comparisons)


def _pair(title: str, p: Pair) -> str:
    given = f"<b>Input</b><pre>{_e(p.input)}</pre>" if p.input.strip() else ""
    return (
        f"<div><h4>{_e(title)}</h4><b>Instruction</b><pre>{_e(p.instruction)}</pre>{given}"
        f"<b>Response</b><pre>{_e(p.output)}</pre></div>"
    )


def _example(x: ExampleView) -> str:
    verdicts = "".join(
        f"<li>{_e(order)}: <b>{_e(outcome)}</b> — {_e(reason)}</li>"
        for order, outcome, reason in x.verdicts
    )
    return (
        f"<h3>Sample {x.sample_id} ({_e(x.location)}), branch {_e(x.branch)}, "
        f"{'kept' if x.kept else 'not kept'}, IFD {_num(x.ifd)}, r-IFD {_num(x.rifd)}</h3>"
        + (f"<ul>{verdicts}</ul>" if verdicts else "")
        + f'<div class="pair">{_pair("original", x.original)}'
        f"{_pair('selected (' + x.branch + ')', x.selected)}</div>"
    )


def render(d: ReportData) -> str:
    """The whole report as one HTML document."""
    title = f"srt-local report: run {d.run['run_id']} on {d.run['dataset']}"
    body = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="note">Generated {_e(d.generated_at)} by srt-local {_e(d.srt_version)}.</p>',
        _settings(d),
        _selection(d),
        _distributions(d),
        _judge(d),
        "<h2>Examples</h2>",
        *(_example(x) for x in d.examples),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def write_report(d: ReportData, out: Path) -> Path:
    """Write the report to `out` (its folder is made if needed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(d), encoding="utf-8")
    return out
