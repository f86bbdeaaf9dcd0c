"""The reference decision rule on hand-made score tables: branches, ties, missing and failed scores."""

from __future__ import annotations

import pytest

from srt_local.decision import VersionScore, choose_instruction, decide


def vs(ifd: float, rifd: float) -> VersionScore:
    return VersionScore(ifd, rifd)


MISSING = VersionScore(problem="reflection parse_failed")
UNSCORABLE = VersionScore(problem="score empty_response")


def run_rule(ori, q, a, qa, emit_unreflected=False):
    choice = choose_instruction(ori, q)
    reflected = qa if choice.base == "Q" else a
    return decide(ori, q, choice, reflected, emit_unreflected)


# (ori, Q, A, QA) -> (branch, emitted); mirrors get_select_data.py's four counters.
TABLE = [
    # Q's IFD rises, QA's r-IFD falls, both < 1: QA emitted (count_1)
    (vs(0.5, 0.6), vs(0.7, 0.5), vs(0.4, 0.3), vs(0.8, 0.4), "QA", True),
    # Q's IFD rises, QA's r-IFD rises: Q kept, not emitted (count_2)
    (vs(0.5, 0.6), vs(0.7, 0.5), vs(0.4, 0.3), vs(0.8, 0.6), "Q", False),
    # Q's IFD falls, A's r-IFD falls: A emitted (count_3)
    (vs(0.5, 0.6), vs(0.4, 0.5), vs(0.6, 0.3), vs(0.8, 0.4), "A", True),
    # Q's IFD falls, A's r-IFD rises: ori, not emitted (count_4)
    (vs(0.5, 0.6), vs(0.4, 0.5), vs(0.6, 0.9), vs(0.8, 0.4), "ori", False),
    # QA chosen but IFD >= 1: filtered
    (vs(0.5, 0.6), vs(0.7, 0.5), vs(0.4, 0.3), vs(1.2, 0.4), "QA", False),
    # A chosen but r-IFD >= 1: filtered
    (vs(0.5, 1.6), vs(0.4, 0.5), vs(0.6, 1.1), vs(0.8, 0.4), "A", False),
]


@pytest.mark.parametrize(("ori", "q", "a", "qa", "branch", "emitted"), TABLE)
def test_reference_branches(ori, q, a, qa, branch, emitted) -> None:
    d = run_rule(ori, q, a, qa)
    assert (d.branch, d.emitted) == (branch, emitted)
    assert d.passes == (d.ifd_final is not None and d.ifd_final < 1 and d.rifd_final < 1)


def test_ifd_tie_keeps_the_original_instruction() -> None:
    d = run_rule(vs(0.5, 0.6), vs(0.5, 0.1), vs(0.4, 0.3), vs(0.2, 0.05))
    assert d.branch == "A"
    assert d.ifd_margin == 0.0


def test_rifd_tie_keeps_the_unreflected_response() -> None:
    d = run_rule(vs(0.5, 0.6), vs(0.4, 0.5), vs(0.4, 0.6), vs(0.2, 0.05))
    assert d.branch == "ori"
    assert d.rifd_margin == 0.0
    assert d.passes and not d.emitted


def test_emit_unreflected_setting_emits_q_and_ori() -> None:
    d = run_rule(vs(0.5, 0.6), vs(0.4, 0.5), vs(0.6, 0.9), vs(0.8, 0.4), emit_unreflected=True)
    assert (d.branch, d.emitted) == ("ori", True)


def test_boundary_of_one_is_rejected() -> None:
    d = run_rule(vs(0.5, 0.6), vs(0.4, 0.5), vs(1.0, 0.3), vs(0.8, 0.4))
    assert d.branch == "A" and not d.passes and not d.emitted


def test_missing_q_keeps_original_and_says_why() -> None:
    d = run_rule(vs(0.5, 0.6), MISSING, vs(0.6, 0.3), vs(0.8, 0.4))
    assert d.branch == "A" and d.emitted
    assert "parse_failed" in d.reason
    assert d.ifd_margin is None


def test_missing_reflected_response_keeps_base() -> None:
    d = run_rule(vs(0.5, 0.6), vs(0.7, 0.5), vs(0.6, 0.3), MISSING)
    assert d.branch == "Q" and d.passes and not d.emitted
    assert "reflected response unusable" in d.reason


def test_unscorable_original_lets_q_stand() -> None:
    d = run_rule(UNSCORABLE, vs(0.7, 0.5), MISSING, vs(0.8, 0.4))
    assert d.branch == "QA" and d.emitted


def test_nothing_scorable_never_passes() -> None:
    d = run_rule(UNSCORABLE, MISSING, MISSING, MISSING)
    assert d.branch == "ori"
    assert not d.passes and not d.emitted
    assert d.ifd_final is None and d.rifd_final is None
    assert "unscorable" in d.reason


def test_a_failure_never_counts_as_a_low_score() -> None:
    # The reference turned failures into 0.0, which passed every "< 1" filter.
    zero_like = VersionScore(None, None, problem="score decode_error")
    d = run_rule(vs(0.5, 0.6), vs(0.4, 0.5), zero_like, vs(0.1, 0.1))
    assert d.branch == "ori"
    assert d.rifd_margin is None
