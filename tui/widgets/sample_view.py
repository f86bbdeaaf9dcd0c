"""One decision in full: original and reflected pair side by side, word differences highlighted, the
scores of each version and the teacher's critique. Stored text goes in as plain text (Content
never reads a plain string as markup) with its control characters made visible."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.widgets import Static

from srt_local.review import SampleDetail, VersionView, word_diff
from srt_local.textsafe import visible

REMOVED = "strike on $error 25%"
ADDED = "bold on $success 25%"
HEADING = "bold $accent"


def number(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def diffed(segments: list[tuple[str, bool]], style: str) -> Content:
    return Content.assemble(
        *((visible(text), style) if changed else visible(text) for text, changed in segments)
    )


def side(title: str, mine: VersionView, other: VersionView, style: str) -> Content:
    """A version's texts, with what differs from `other` in `style`, and its scores."""
    parts: list[Content | str | tuple[str, str]] = [(title, HEADING), "\n"]
    for label, a, b in (
        ("instruction", mine.instruction, other.instruction),
        ("input", mine.input, other.input),
        ("response", mine.output, other.output),
    ):
        if label == "input" and not a and not b:
            continue
        left, _right = word_diff(visible(a), visible(b))
        parts += ["\n", (label, "italic $text-muted"), "\n", diffed(left, style), "\n"]
    status = "" if mine.score_status in (None, "ok") else f" ({mine.score_status})"
    if mine.score_status is None:
        status = " (not scored by this run's student)"
    parts += ["\n", (f"IFD {number(mine.ifd)} · r-IFD {number(mine.rifd)}{status}", "$text-muted")]
    return Content.assemble(*parts)


def original(d: SampleDetail, other: VersionView) -> Content:
    """The imported original, and next to it the merged one (M) where the run made one."""
    imported = d.versions["ori"]
    if d.merged is None:
        return side("original", imported, other, REMOVED)
    return Content.assemble(
        side("original (imported)", imported, d.merged, REMOVED),
        "\n\n",
        side("merged original M (the method's base)", d.merged, other, REMOVED),
    )


def headline(d: SampleDetail) -> Content:
    kept = "yes" if d.kept else "no"
    why = f"override {d.override}" if d.override else ("emitted" if d.emitted else "not emitted")
    return Content.assemble(
        (f"sample {d.sample_id}", "bold"),
        f" · {visible(d.location)} · branch ",
        (d.branch, "bold"),
        f" · final {d.final_kind} · ΔIFD {number(d.ifd_margin)} · Δr-IFD {number(d.rifd_margin)}"
        " · kept ",
        (kept, "bold $success" if d.kept else "bold $error"),
        f" ({why})\n",
        ("reason: ", "$text-muted"),
        visible(d.reason),
    )


def critiques(d: SampleDetail) -> Content:
    parts: list[Content | str | tuple[str, str]] = []
    for kind in ("Q", "A", "QA"):
        v = d.versions.get(kind)
        if v is not None and v.critique:
            parts += [(f"teacher's critique ({kind})", HEADING), "\n", visible(v.critique.strip())]
            parts.append("\n\n")
    for kind, outcome in sorted(d.failures.items()):
        parts += [(f"{kind} could not be made: ", "bold $error"), visible(outcome), "\n"]
    return Content.assemble(*parts) if parts else Content("no critique stored")


class SampleView(VerticalScroll):
    """The detail pane of Browse. `show(detail, kind)` puts the version `kind` on the right."""

    DEFAULT_CSS = """
    SampleView {
        height: 1fr;
        border-top: solid $primary;
        padding: 0 1;
    }
    SampleView > .head {
        margin-bottom: 1;
    }
    SampleView > Horizontal {
        height: auto;
    }
    SampleView > Horizontal > Static {
        width: 1fr;
        padding-right: 1;
    }
    SampleView > .critique {
        margin-top: 1;
    }
    """

    def compose(self) -> ComposeResult:
        yield Static("Highlight a row to see the sample here.", classes="head", markup=False)
        with Horizontal():
            yield Static("", classes="left", markup=False)
            yield Static("", classes="right", markup=False)
        yield Static("", classes="critique", markup=False)

    def show(self, d: SampleDetail, kind: str | None) -> None:
        ori = d.base  # the merged original where the run made one (paper profile)
        self.query_one(".head", Static).update(headline(d))
        refl = d.versions.get(kind) if kind else None
        if refl is None:
            self.query_one(".left", Static).update(original(d, ori))
            failed = ", ".join(f"{k}: {o}" for k, o in sorted(d.failures.items()))
            self.query_one(".right", Static).update(
                Content.assemble(
                    ("reflected", HEADING),
                    "\n\nno reflected version" + (f" ({visible(failed)})" if failed else ""),
                )
            )
        else:
            others = [k for k in d.reflected_kinds() if k != kind]
            more = f" · v: {', '.join(others)}" if others else ""
            title = f"reflected {kind}" + (" (final)" if kind == d.final_kind else "") + more
            self.query_one(".left", Static).update(original(d, refl))
            self.query_one(".right", Static).update(side(title, refl, ori, ADDED))
        self.query_one(".critique", Static).update(critiques(d))
        self.scroll_home(animate=False)

    def clear(self, message: str) -> None:
        self.query_one(".head", Static).update(Content(visible(message)))
        for name in (".left", ".right", ".critique"):
            self.query_one(name, Static).update("")
