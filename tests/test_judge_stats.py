"""The judge's statistics and prompt, as pure functions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from srt_local.judge.prompt import build_judge_prompt, parse_verdict, prompt_version, reply_schema
from srt_local.judge.records import outcome_for
from srt_local.judge.stats import (
    SampleOutcome,
    bootstrap_interval,
    combine,
    ifd_band,
    length_controlled,
    summarise,
    win_rate,
)
from srt_local.pairs import Pair


@pytest.mark.parametrize(
    ("first", "second", "combined"),
    [
        ("win", "win", "win"),
        ("win", "tie", "win"),
        ("tie", "win", "win"),
        ("win", "loss", "tie"),  # the order decided, not the data
        ("loss", "win", "tie"),
        ("tie", "tie", "tie"),
        ("loss", "tie", "loss"),
        ("loss", "loss", "loss"),
    ],
)
def test_two_orders_combine(first: str, second: str, combined: str) -> None:
    assert combine(first, second) == combined


def test_verdicts_are_read_for_the_side_the_selected_pair_was_on() -> None:
    assert outcome_for("A", "A") == "win" and outcome_for("B", "A") == "loss"
    assert outcome_for("B", "B") == "win" and outcome_for("A", "B") == "loss"
    assert outcome_for("tie", "A") == outcome_for("tie", "B") == "tie"


def test_bootstrap_matches_a_plain_percentile_bootstrap() -> None:
    scores = [1.0, 1.0, 0.5, 0.0, 1.0, 0.5, 1.0]
    seed, n_boot = 7, 500
    # The same resamples, then a percentile by hand (linear interpolation between order stats).
    index = np.random.default_rng(seed).integers(0, len(scores), size=(n_boot, len(scores)))
    means = sorted(sum(scores[i] for i in row) / len(scores) for row in index)

    def percentile(q: float) -> float:
        pos = q * (n_boot - 1)
        lo = math.floor(pos)
        return means[lo] + (means[min(lo + 1, n_boot - 1)] - means[lo]) * (pos - lo)

    low, high = bootstrap_interval(scores, seed, n_boot)
    assert low == pytest.approx(percentile(0.025), abs=1e-12)
    assert high == pytest.approx(percentile(0.975), abs=1e-12)
    assert low < np.mean(scores) < high
    assert bootstrap_interval(scores, seed, n_boot) == (low, high), "seeded: reproducible"


def test_win_rate_counts_and_degenerate_intervals() -> None:
    rate = win_rate(["win", "win", "tie", "loss"], seed=0)
    assert (rate.n, rate.wins, rate.ties, rate.losses) == (4, 2, 1, 1)
    assert rate.win_rate == pytest.approx(2.5 / 4)
    every = win_rate(["win"] * 5)
    assert (every.win_rate, every.low, every.high) == (1.0, 1.0, 1.0)
    none = win_rate([])
    assert none.n == 0 and math.isnan(none.win_rate) and math.isnan(none.low)


def test_length_control_removes_a_pure_length_preference() -> None:
    rng = np.random.default_rng(1)
    diff = rng.normal(300, 200, size=4000)  # the selected side is mostly longer
    x = np.tanh(diff / diff.std())
    # A judge that only looks at length: even odds at equal length, more wins the longer it is.
    wins = rng.random(4000) < 1 / (1 + np.exp(-3 * x))
    raw = wins.mean()
    lc = length_controlled(wins.astype(float).tolist(), diff.tolist())
    assert lc is not None
    assert raw > 0.75
    assert lc.win_rate == pytest.approx(0.5, abs=0.05)
    assert lc.slope == pytest.approx(3, abs=0.4)


def test_length_control_keeps_a_preference_that_is_not_length() -> None:
    rng = np.random.default_rng(2)
    diff = rng.normal(0, 100, size=4000)
    wins = rng.random(4000) < 0.8
    lc = length_controlled(wins.astype(float).tolist(), diff.tolist())
    assert lc is not None and lc.win_rate == pytest.approx(wins.mean(), abs=0.03)
    assert length_controlled([], []) is None


def test_summary_breaks_down_by_branch_and_band_and_measures_consistency() -> None:
    samples = [
        SampleOutcome(1, "win", "win", 100, "QA", 0.3),
        SampleOutcome(2, "win", "loss", 50, "QA", 0.6),  # position-biased: a tie
        SampleOutcome(3, "loss", "loss", -20, "A", 0.9),
        SampleOutcome(4, "tie", "tie", 0, "A", 1.4),
    ]
    s = summarise(samples, seed=3, n_boot=200)
    assert (s.overall.wins, s.overall.ties, s.overall.losses) == (1, 2, 1)
    assert s.overall.win_rate == 0.5
    assert s.consistency == 0.75
    # Shown first, the example won: sample 1 first order; sample 2 both (win as A, then the
    # rival won as A); sample 3 second order (rival as A won): 4 of 8 orders.
    assert s.first_position_wins == 0.5
    assert set(s.by_branch) == {"QA", "A"} and s.by_branch["QA"].win_rate == 0.75
    assert set(s.by_band) == {"0.25-0.5", "0.5-0.75", "0.75-1", "≥1"}
    assert s.mean_length_diff == pytest.approx(32.5)
    assert ifd_band(None) == "none" and ifd_band(0.1) == "0-0.25"


def test_prompt_fills_the_files_placeholders_once_and_shows_both_examples() -> None:
    a = Pair("Add $output_b and 2.", "", "It is $instruction_a.")
    b = Pair("Name a colour.", "in French", "Rouge.")
    prompt = build_judge_prompt(a, b)
    user = prompt.messages[1]["content"]
    assert "Add $output_b and 2." in user and "It is $instruction_a." in user
    assert user.index("### Example A") < user.index("Add $output_b") < user.index("### Example B")
    assert "#### Input\nin French" in user and user.count("#### Input") == 1
    for criterion in ("helpfulness", "relevance", "accuracy", "level of detail"):
        assert criterion in user
    assert prompt.schema == reply_schema() and prompt.version == prompt_version()
    assert prompt.version.startswith("judge-")


@pytest.mark.parametrize(
    ("reply", "outcome", "verdict"),
    [
        ('{"reason": "B is detailed", "verdict": "B"}', "ok", "B"),
        ('{"reason": "same", "verdict": "TIE"}', "ok", "tie"),
        ('Sure: {"reason": "r", "verdict": "a"} done', "ok", "A"),
        ('{"reason": "r", "verdict": "C"}', "parse_failed", None),
        ("no json here", "parse_failed", None),
        ("  ", "empty", None),
        (None, "empty", None),
    ],
)
def test_replies_parse_strictly(reply: str | None, outcome: str, verdict: str | None) -> None:
    parsed = parse_verdict(reply)
    assert parsed.outcome == outcome
    assert (parsed.verdict.verdict if parsed.verdict else None) == verdict


def test_length_controlled_interval_is_seeded_and_covers_the_estimate() -> None:
    rng = np.random.default_rng(4)
    diff = rng.normal(200, 150, size=300)
    wins = (rng.random(300) < 1 / (1 + np.exp(-2 * np.tanh(diff / diff.std())))).astype(float)
    lc = length_controlled(wins.tolist(), diff.tolist(), seed=9, n_boot=200)
    assert lc is not None
    assert lc.low < lc.win_rate < lc.high
    assert lc.low < 0.5 < lc.high, "a pure length preference: no win left at equal length"
    again = length_controlled(wins.tolist(), diff.tolist(), seed=9, n_boot=200)
    assert again == lc
    unseeded = length_controlled(wins.tolist(), diff.tolist())
    assert unseeded is not None and math.isnan(unseeded.low)
