"""`srt judge` and `srt report` as a user runs them, with the Ollama-protocol test server playing a
deterministic judge on a run made by the real pipeline."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from srt_local.judge.prompt import reply_schema
from srt_local.judge.stats import OUTCOME_SCORE, bootstrap_interval, combine
from srt_local.review import score_distributions, set_override
from srt_local.store import Store
from tests.judge_server import Example, JudgeTestServer, longer_wins
from tests.judge_support import HOSTILE, PAIRS, build_run, copy_store, srt, srt_cmd
from tests.ollama_server import Reply

ORIGINALS = {(p["instruction"], p["output"]): p for p in PAIRS}


def known_rule(a: Example, b: Example) -> str:
    """Against the original: the colours original beats its rewrite, the bakery pair is a tie,
    the judge always picks A for the 12 x 12 pair (position bias), and every other rewrite wins."""
    original, original_side, rewrite_side = (
        (a, "A", "B") if (a.instruction, a.output) in ORIGINALS else (b, "B", "A")
    )
    if "colours" in original.instruction:
        return original_side
    if "12 times" in original.instruction:
        return "A"
    if "bakery" in original.instruction:
        return "tie"
    return rewrite_side


def expected_outcome(instruction: str) -> str:
    """The combined outcome the rule gives a sample, from its two orders."""
    orders = []
    for selected_side in ("A", "B"):
        if "colours" in instruction:
            orders.append("loss")
        elif "12 times" in instruction:
            orders.append("win" if selected_side == "A" else "loss")
        elif "bakery" in instruction:
            orders.append("tie")
        else:
            orders.append("win")
    return combine(*orders)


@pytest.fixture(scope="module")
def base_store(tmp_path_factory: pytest.TempPathFactory, gemma_gguf: Path) -> Path:
    return build_run(tmp_path_factory.mktemp("judge-base"))


@pytest.fixture
def db(base_store: Path, tmp_path: Path) -> Path:
    return copy_store(base_store, tmp_path)


def kept_originals(db: Path) -> list[tuple[int, str]]:
    with Store.open(db, read_only=True) as store:
        return [
            (int(sid), str(ins))
            for sid, ins in store.query(
                "SELECT s.sample_id, s.instruction FROM selection x JOIN samples s "
                "USING (sample_id) WHERE x.run_id = 1 ORDER BY s.position"
            )
        ]


class Figures(HTMLParser):
    """The report's machine-readable figures, its tables' cells, and its raw tags."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, dict[str, str]] = {}
        self.tags: list[str] = []
        self.cells: list[str] = []
        self.svgs = 0
        self.thresholds = 0
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = {k: v or "" for k, v in attrs}
        if "data-figure" in values:
            self.figures[values["data-figure"]] = values
        self.svgs += tag == "svg"
        self.thresholds += "threshold" in values.get("class", "")
        self._in_cell = tag == "td"

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.cells.append(data)


def test_known_verdicts_give_the_expected_win_rate_and_interval(db: Path, tmp_path: Path) -> None:
    kept = kept_originals(db)
    assert len(kept) >= 5, "the fixture run keeps most samples"
    outcomes = [expected_outcome(ins) for _, ins in kept]
    scores = [OUTCOME_SCORE[o] for o in outcomes]
    expected_rate = sum(scores) / len(scores)
    # --seed draws the random control; against the original the bootstrap's seed is 0.
    expected_low, expected_high = bootstrap_interval(scores, seed=0)
    assert expected_low < expected_rate < expected_high

    with JudgeTestServer(rule=known_rule) as server:
        out = srt(
            "judge", "1", "--judge", "ollama", "--seed", "5", "--db", str(db), host=server.url
        )
        assert out.returncode == 0, out.stderr
        requests = server.judge_requests
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["against"] == "original"
    assert figures["n"] == len(kept)
    assert (figures["wins"], figures["ties"], figures["losses"]) == tuple(
        outcomes.count(o) for o in ("win", "tie", "loss")
    )
    assert figures["win_rate"] == expected_rate
    assert figures["ci95"] == [expected_low, expected_high]
    assert figures["bootstrap"] == {"seed": 0, "resamples": 2000}
    n_biased = sum("12 times" in ins for _, ins in kept)
    assert figures["position_consistency"] == pytest.approx(1 - n_biased / len(kept))

    # Both orders of every sample, each asked once, the selected pair once on each side, the
    # reply held to the verdict schema.
    assert len(requests) == 2 * len(kept)
    assert all(r.body["format"] == reply_schema() for r in requests)
    shown: dict[Any, Any] = {}
    for r in requests:
        user = r.body["messages"][1]["content"]
        a_is_original = user.split("### Example B")[0].count("#### Instruction") == 1 and any(
            f"#### Instruction\n{ins}\n" in user.split("### Example B")[0]
            and f"#### Response\n{o['output']}\n" in user.split("### Example B")[0]
            for (ins, _), o in ORIGINALS.items()
        )
        shown[a_is_original] = shown.get(a_is_original, 0) + 1
    assert shown == {True: len(kept), False: len(kept)}

    with Store.open(db, read_only=True) as store:
        calls = store.query_dicts("SELECT * FROM judge_calls ORDER BY call_id")
    assert len(calls) == 2 * len(kept)
    first = calls[0]
    assert first["backend"] == "ollama" and first["model"] == server.model
    assert first["model_digest"] and first["host"] == server.url
    assert first["outcome"] == "ok" and first["verdict"] in ("A", "B", "tie")
    assert json.loads(first["raw_reply"])["verdict"] == first["verdict"]
    assert json.loads(first["messages"])[1]["content"].startswith("Here are two examples")
    assert first["prompt_version"].startswith("judge-")

    # The report holds the same figures, exactly, with no seed to repeat.
    html_path = tmp_path / "report.html"
    rep = srt("report", "1", "--out", str(html_path), "--db", str(db))
    assert rep.returncode == 0, rep.stderr
    page = Figures()
    page.feed(html_path.read_text(encoding="utf-8"))
    wr = page.figures["winrate-original"]
    assert float(wr["data-value"]) == expected_rate
    assert (float(wr["data-low"]), float(wr["data-high"])) == (expected_low, expected_high)
    assert float(page.figures["winrate-original-consistency"]["data-value"]) == pytest.approx(
        1 - n_biased / len(kept)
    )
    lc = page.figures["winrate-original-lc"]
    assert float(lc["data-low"]) <= float(lc["data-value"]) <= float(lc["data-high"])
    assert [float(lc["data-low"]), float(lc["data-high"])] == figures["length_controlled_ci95"]


def test_report_holds_every_figure_offline_with_text_escaped(db: Path, tmp_path: Path) -> None:
    with JudgeTestServer(rule=known_rule) as server:
        assert (
            srt("judge", "1", "--judge", "ollama", "--db", str(db), host=server.url).returncode == 0
        )
    with JudgeTestServer(rule=longer_wins) as server:
        out = srt(
            "judge",
            "1",
            "--judge",
            "ollama",
            "--against",
            "random",
            "--seed",
            "11",
            "--db",
            str(db),
            host=server.url,
        )
        assert out.returncode == 0, out.stderr
    random_figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert random_figures["bootstrap"]["seed"] == 11
    html_path = tmp_path / "out" / "report.html"
    rep = srt("report", "1", "--out", str(html_path), "--db", str(db))
    assert rep.returncode == 0, rep.stderr
    text = html_path.read_text(encoding="utf-8")
    page = Figures()
    page.feed(text)

    # Offline: no script, no stylesheet or image fetched, nothing loaded from anywhere.
    assert "script" not in page.tags and "link" not in page.tags and "img" not in page.tags
    for needle in ("src=", "href=", "@import", "url("):
        assert needle not in text
    # Stored text is data: the hostile sample is shown, escaped, never as markup.
    assert HOSTILE not in text and "<b>blocks</b>" not in text
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in text

    with Store.open(db, read_only=True) as store:
        decided = store.query("SELECT count(*) FROM decisions")[0][0]
        kept = store.query("SELECT count(*) FROM selection")[0][0]
        branches = store.query("SELECT branch, count(*) FROM decisions GROUP BY ALL")
        digest = store.query("SELECT student_sha256 FROM runs")[0][0]
    assert int(page.figures["kept"]["data-value"]) == kept
    assert int(page.figures["rejected"]["data-value"]) == decided - kept
    assert digest in text, "the student's provenance"
    assert "Teacher calls" in text and "Judge calls" in text
    for branch, n in branches:
        assert branch in page.cells and str(n) in page.cells
    # Two histograms with their thresholds, branch counts, two win-rate charts.
    assert page.svgs >= 5 and page.thresholds == 2
    assert "IFD: original vs reflected instruction" in text and "r-IFD: base vs reflected" in text
    assert "winrate-original" in page.figures and "winrate-random" in page.figures
    assert "Random draw seed 11" in text
    # The interval `srt judge` printed for the random draw, not one of another bootstrap seed.
    random_rate = page.figures["winrate-random"]
    assert [float(random_rate["data-low"]), float(random_rate["data-high"])] == random_figures[
        "ci95"
    ]
    assert text.count('class="pair"') >= 3, "examples side by side"


def test_random_control_is_a_seeded_same_size_draw(db: Path) -> None:
    kept = kept_originals(db)
    with JudgeTestServer() as server:
        args = ("judge", "1", "--judge", "ollama", "--against", "random", "--db", str(db))
        assert srt(*args, "--seed", "3", host=server.url).returncode == 0
        asked = len(server.judge_requests)
        assert asked == 2 * len(kept)
        again = srt(*args, "--seed", "3", host=server.url)
        assert again.returncode == 0 and len(server.judge_requests) == asked, "nothing re-asked"
        assert srt(*args, "--seed", "4", host=server.url).returncode == 0
    with Store.open(db, read_only=True) as store:
        draws = {
            seed: [
                r[0]
                for r in store.query(
                    "SELECT other_sample_id FROM judgements WHERE against = 'random' AND seed = ? "
                    "AND selected_side = 'A' ORDER BY sample_id",
                    [seed],
                )
            ]
            for seed in (3, 4)
        }
        n_dataset = store.query("SELECT count(*) FROM samples")[0][0]
        seeds = {r[0] for r in store.query("SELECT DISTINCT seed FROM judge_calls")}
    assert seeds == {3, 4}
    for draw in draws.values():
        assert len(draw) == len(kept) == len(set(draw)), "same size, without replacement"
        assert all(1 <= sid <= n_dataset for sid in draw)
    assert draws[3] != draws[4]


def test_unparsable_and_failed_replies_are_asked_again_and_kept(db: Path) -> None:
    with JudgeTestServer() as server:
        from tests.ollama_server import Error

        server.script(Reply(text="I think A is better."), Error(503, "busy"))
        out = srt(
            "judge", "1", "--judge", "ollama", "--limit", "1", "--db", str(db), host=server.url
        )
        assert out.returncode == 0, out.stderr
    with Store.open(db, read_only=True) as store:
        outcomes = sorted(r[0] for r in store.query("SELECT outcome FROM judge_calls"))
        judged = store.query("SELECT outcome FROM judgements")
        kinds = {
            r[0]
            for r in store.query("SELECT error_kind FROM judge_calls WHERE error_kind IS NOT NULL")
        }
    assert outcomes == ["error", "ok", "ok", "parse_failed"]
    assert kinds == {"busy"}
    assert len(judged) == 2 and all(o[0] != "failed" for o in judged)


def test_apply_rejects_losers_as_the_judge_and_a_person_still_wins(
    db: Path, tmp_path: Path
) -> None:
    kept = kept_originals(db)
    losers = [sid for sid, ins in kept if expected_outcome(ins) == "loss" and "colours" in ins]
    assert losers, "the colours sample is kept and loses"
    with JudgeTestServer(rule=known_rule) as server:
        out = srt("judge", "1", "--judge", "ollama", "--apply", "--db", str(db), host=server.url)
        assert out.returncode == 0, out.stderr
    assert "1 samples rejected by the judge" in out.stderr

    def exported() -> list[str]:
        path = tmp_path / "kept.jsonl"
        done = srt(
            "export", "1", "--format", "alpaca", "--out", str(path), "--force", "--db", str(db)
        )
        assert done.returncode == 0, done.stderr
        return [json.loads(line)["instruction"] for line in path.read_text().splitlines()]

    with Store.open(db, read_only=True) as store:
        overrides = store.query("SELECT sample_id, override, judge_key FROM judge_overrides")
        person = store.query("SELECT count(*) FROM decisions WHERE override IS NOT NULL")[0][0]
    assert [(sid, value) for sid, value, _ in overrides] == [(losers[0], "reject")]
    assert person == 0, "the judge's override is not a person's"
    assert len(exported()) == len(kept) - 1
    with Store.open(db, read_only=True) as store:
        assert score_distributions(store, 1).kept == len(kept) - 1, "the TUI counts it too"

    with Store.open(db) as store:
        set_override(store, 1, losers[0], "accept")
    assert len(exported()) == len(kept), "a person's accept wins over the judge's reject"
    with Store.open(db) as store:
        set_override(store, 1, losers[0], None)

    undo = srt("judge", "1", "--unapply", "--db", str(db))
    assert undo.returncode == 0 and "removed 1 judge overrides" in undo.stderr
    assert len(exported()) == len(kept)


def test_a_killed_judge_run_resumes_without_repeating_a_stored_call(db: Path) -> None:
    kept = kept_originals(db)
    total = 2 * len(kept)
    with JudgeTestServer(rule=known_rule, latency=0.4) as server:
        import os

        env = {**os.environ, "OLLAMA_HOST": server.url}
        proc = subprocess.Popen(
            srt_cmd("judge", "1", "--judge", "ollama", "--db", str(db)),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while len(server.judge_requests) < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)  # some replies land and are stored, others are in flight
        assert proc.poll() is None, "the kill must land mid-run"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = len(server.judge_requests)

        with Store.open(db) as store:
            stored = [
                r[0] for r in store.query("SELECT messages FROM judge_calls ORDER BY call_id")
            ]
            n_judged = store.query("SELECT count(*) FROM judgements")[0][0]
        assert 0 < n_judged < total
        assert len(stored) == n_judged

        out = srt("judge", "1", "--judge", "ollama", "--db", str(db), host=server.url)
        assert out.returncode == 0, out.stderr
        after = server.judge_requests[before:]

    stored_prompts = {json.dumps(json.loads(m)) for m in stored}
    for r in after:
        assert json.dumps(r.body["messages"]) not in stored_prompts, "a stored call was repeated"
    assert len(after) == total - n_judged
    with Store.open(db, read_only=True) as store:
        assert store.query("SELECT count(*) FROM judgements")[0][0] == total
        dup = store.query(
            "SELECT sample_id, selected_side FROM judge_calls WHERE outcome = 'ok' "
            "GROUP BY ALL HAVING count(*) > 1"
        )
        assert dup == []
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    expected = [OUTCOME_SCORE[expected_outcome(ins)] for _, ins in kept]
    assert figures["win_rate"] == sum(expected) / len(expected)


def test_errors_are_one_line_messages(db: Path) -> None:
    out = srt("judge", "9", "--judge", "ollama", "--db", str(db), host="http://127.0.0.1:9")
    # The missing run is named before any judge is looked for.
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        line for line in out.stderr.strip().splitlines() if "no run 9" in line
    ], out.stderr
    with JudgeTestServer() as server:
        out = srt("judge", "9", "--judge", "ollama", "--db", str(db), host=server.url)
    assert out.returncode == 2 and "no run 9" in out.stderr and "Traceback" not in out.stderr
    out = srt("report", "9", "--out", "x.html", "--db", str(db))
    assert out.returncode == 2 and "no run 9" in out.stderr
    out = srt("judge", "1", "--apply", "--against", "random", "--db", str(db))
    assert out.returncode == 2 and "--apply" in out.stderr


@pytest.mark.slow
def test_the_embedded_model_judges_two_samples(db: Path, smollm_gguf: Path, tmp_path: Path) -> None:
    out = srt("judge", "1", "--judge", "smollm2-135m-chat", "--limit", "2", "--db", str(db))
    assert out.returncode == 0, out.stderr
    with Store.open(db, read_only=True) as store:
        judged = store.query_dicts("SELECT * FROM judgements ORDER BY sample_id, selected_side")
        calls = store.query_dicts("SELECT * FROM judge_calls ORDER BY call_id")
    assert [(j["selected_side"]) for j in judged] == ["A", "B", "A", "B"]
    assert {c["backend"] for c in calls} == {"llamacpp"}
    assert all(c["model_digest"] and c["raw_reply"] is not None for c in calls)
    ok = [c for c in calls if c["outcome"] == "ok"]
    # The grammar holds the reply to the schema: a verdict parses from every completed reply.
    assert ok and all(c["verdict"] in ("A", "B", "tie") for c in ok)
    assert all(j["outcome"] in ("win", "tie", "loss", "failed") for j in judged)
    again = srt("judge", "1", "--judge", "smollm2-135m-chat", "--limit", "2", "--db", str(db))
    assert again.returncode == 0 and "judged 0 orders now" in again.stderr
    rep = srt("report", "1", "--out", str(tmp_path / "r.html"), "--db", str(db))
    assert rep.returncode == 0, rep.stderr
