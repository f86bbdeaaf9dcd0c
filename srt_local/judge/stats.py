"""The numbers of a judged comparison, as pure functions over per-order outcomes.

Each sample is judged twice, the selected pair shown first (A) and then second (B). Its combined
outcome follows the usual pairwise rule: a win when it wins both orders or wins one and ties the
other, a loss likewise, a tie otherwise (two ties, or one win and one loss: the judge's order,
not the data, decided). The win rate scores a win 1, a tie 1/2, a loss 0, and is averaged over
samples; its 95% interval is a seeded percentile bootstrap over samples.

Judges favour longer answers, so the length-controlled win rate fits a logistic regression of
the per-sample score on the response length difference (as length-controlled AlpacaEval does,
on tanh of the standardised difference) and reports the fitted win rate at zero difference.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np

OUTCOME_SCORE = {"win": 1.0, "tie": 0.5, "loss": 0.0}
N_BOOT = 2000
# Each length-controlled resample is a regression fit: fewer of them.
N_BOOT_LC = 500
LEVEL = 0.95
# A light ridge keeps the fit finite when every sample has the same outcome.
RIDGE = 1e-2
IFD_BANDS = ((0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0), (1.0, float("inf")))


@dataclass(frozen=True)
class SampleOutcome:
    """One sample judged in both orders, with what the figures are broken down by."""

    sample_id: int
    first: str  # win | tie | loss with the selected pair shown as A
    second: str  # ... shown as B
    length_diff: int  # response characters: selected minus rival
    branch: str = ""
    ifd: float | None = None

    @property
    def combined(self) -> str:
        return combine(self.first, self.second)

    @property
    def score(self) -> float:
        return OUTCOME_SCORE[self.combined]


@dataclass(frozen=True)
class WinRate:
    n: int
    wins: int
    ties: int
    losses: int
    win_rate: float  # (wins + ties / 2) / n; nan when n == 0
    low: float  # bootstrap interval
    high: float
    seed: int
    n_boot: int


@dataclass(frozen=True)
class LengthControlled:
    win_rate: float  # the fitted win rate at zero length difference
    slope: float  # log-odds per unit of tanh(diff / scale)
    scale: float  # the standard deviation the differences were divided by
    low: float = float("nan")  # bootstrap interval of win_rate (samples resampled, refitted)
    high: float = float("nan")


@dataclass(frozen=True)
class Summary:
    """Everything reported about one comparison of selected against rival."""

    overall: WinRate
    length_controlled: LengthControlled | None
    mean_length_diff: float
    median_length_diff: float
    consistency: float  # share of samples whose two orders agree
    first_position_wins: float  # share of orders the example shown as A won (position bias)
    by_branch: dict[str, WinRate]
    by_band: dict[str, WinRate]


def combine(first: str, second: str) -> str:
    """The outcome of a sample from its two orders (see the module docstring)."""
    total = OUTCOME_SCORE[first] + OUTCOME_SCORE[second]
    if total > 1.0:
        return "win"
    if total < 1.0:
        return "loss"
    return "tie"


def bootstrap_interval(
    scores: Sequence[float], seed: int, n_boot: int = N_BOOT, level: float = LEVEL
) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean: `n_boot` resamples (with replacement, all
    drawn at once from numpy's default generator seeded with `seed`), then the (1-level)/2 and
    (1+level)/2 quantiles (numpy's linear method) of their means."""
    values = np.asarray(scores, dtype=float)
    if values.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    index = rng.integers(0, values.size, size=(n_boot, values.size))
    means = values[index].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def win_rate(outcomes: Sequence[str], seed: int = 0, n_boot: int = N_BOOT) -> WinRate:
    """Wins, ties and losses of combined outcomes, the win rate and its bootstrap interval."""
    listed = list(outcomes)
    scores = [OUTCOME_SCORE[o] for o in listed]
    n = len(scores)
    low, high = bootstrap_interval(scores, seed, n_boot)
    return WinRate(
        n=n,
        wins=listed.count("win"),
        ties=listed.count("tie"),
        losses=listed.count("loss"),
        win_rate=float(np.mean(scores)) if n else float("nan"),
        low=low,
        high=high,
        seed=seed,
        n_boot=n_boot,
    )


def _fit(y: np.ndarray, x: np.ndarray, ridge: float) -> np.ndarray:
    """Ridge-penalised logistic regression of fractional y on the columns of x (Newton)."""
    beta = np.zeros(x.shape[1])
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(x @ beta)))
        gradient = x.T @ (y - p) - ridge * beta
        hessian = (x.T * (p * (1 - p))) @ x + ridge * np.eye(x.shape[1])
        step = np.linalg.solve(hessian, gradient)
        beta = beta + step
        if float(np.abs(step).max()) < 1e-10:
            break
    return beta


def length_controlled(
    scores: Sequence[float],
    length_diff: Sequence[float],
    ridge: float = RIDGE,
    seed: int | None = None,
    n_boot: int = N_BOOT_LC,
    level: float = LEVEL,
) -> LengthControlled | None:
    """Fit P(selected wins) = sigmoid(b0 + b1 * tanh(diff / sd)) to fractional scores by Newton's
    method (the Bernoulli log-likelihood holds for scores in [0, 1]); b0 gives the win rate at
    zero length difference. With a `seed`, its percentile bootstrap interval: samples resampled
    (numpy's default generator), the model refitted on each. None with no samples."""
    y = np.asarray(scores, dtype=float)
    d = np.asarray(length_diff, dtype=float)
    if y.size == 0:
        return None
    scale = float(d.std()) or 1.0
    x = np.column_stack([np.ones_like(d), np.tanh(d / scale)])
    beta = _fit(y, x, ridge)
    low = high = float("nan")
    if seed is not None:
        index = np.random.default_rng(seed).integers(0, y.size, size=(n_boot, y.size))
        rates = [1.0 / (1.0 + np.exp(-_fit(y[i], x[i], ridge)[0])) for i in index]
        low, high = (float(q) for q in np.quantile(rates, [(1 - level) / 2, (1 + level) / 2]))
    return LengthControlled(
        win_rate=float(1.0 / (1.0 + np.exp(-beta[0]))),
        slope=float(beta[1]),
        scale=scale,
        low=low,
        high=high,
    )


def ifd_band(ifd: float | None) -> str:
    """The IFD band a final score falls in, e.g. '0.25-0.5'; 'none' without a score."""
    if ifd is None or not np.isfinite(ifd):
        return "none"
    for low, high in IFD_BANDS:
        if low <= ifd < high:
            return f"≥{low:g}" if high == float("inf") else f"{low:g}-{high:g}"
    return f"<{IFD_BANDS[0][0]:g}"


def summarise(samples: Sequence[SampleOutcome], seed: int = 0, n_boot: int = N_BOOT) -> Summary:
    """Every figure of one comparison, from the samples judged in both orders."""
    outcomes = [s.combined for s in samples]
    diffs = [float(s.length_diff) for s in samples]
    orders = [o for s in samples for o in (s.first, s.second)]
    # The example shown as A won: the selected pair won its first order, or lost its second.
    first_won = sum(s.first == "win" for s in samples) + sum(s.second == "loss" for s in samples)
    return Summary(
        overall=win_rate(outcomes, seed, n_boot),
        length_controlled=length_controlled([s.score for s in samples], diffs, seed=seed),
        mean_length_diff=float(np.mean(diffs)) if diffs else float("nan"),
        median_length_diff=float(np.median(diffs)) if diffs else float("nan"),
        consistency=(
            sum(s.first == s.second for s in samples) / len(samples) if samples else float("nan")
        ),
        first_position_wins=first_won / len(orders) if orders else float("nan"),
        by_branch=_grouped(samples, lambda s: s.branch, seed, n_boot),
        by_band=_grouped(samples, lambda s: ifd_band(s.ifd), seed, n_boot),
    )


def _grouped(
    samples: Sequence[SampleOutcome],
    group: Callable[[SampleOutcome], Hashable],
    seed: int,
    n_boot: int,
) -> dict[str, WinRate]:
    groups: dict[str, list[str]] = {}
    for s in samples:
        groups.setdefault(str(group(s)), []).append(s.combined)
    return {name: win_rate(groups[name], seed, n_boot) for name in sorted(groups)}
