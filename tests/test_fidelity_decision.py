"""The `paper` profile's decision rule equals the reference code's, on every combination.

The reference compares four (IFD, r-IFD) pairs with plain `<` and `>`; a version its scorer could
not score is NaN there, and every comparison with NaN is false. `reference_rule` below restates
that if-tree independently of `srt_local.decision`, and the test runs both over every combination
of scored (below, at and above 1, and ties) and unscorable versions.
"""

from __future__ import annotations

import itertools
import math

from srt_local.decision import VersionScore, choose_instruction, decide
from srt_local.exporter import top_k_rule
from srt_local.run.vocabulary import Kind, Profile

NAN = math.nan
VALUES = (0.5, 0.9, 1.0, 1.3)
STATES: list[tuple[float, float] | None] = [
    *itertools.product(VALUES, VALUES),
    None,  # unscorable
]


def reference_rule(
    ori: tuple[float, float],
    q: tuple[float, float],
    a: tuple[float, float],
    qa: tuple[float, float],
) -> tuple[str, bool, bool]:
    """(branch, passes, emitted) as the reference's selection script decides, NaN for unscorable."""
    (ori_ifd, ori_rifd), (q_ifd, q_rifd), (a_ifd, a_rifd), (qa_ifd, qa_rifd) = ori, q, a, qa
    if q_ifd > ori_ifd:
        if qa_rifd < q_rifd:
            ok = qa_rifd < 1 and qa_ifd < 1
            return "QA", ok, ok
        return "Q", q_rifd < 1 and q_ifd < 1, False
    if a_rifd < ori_rifd:
        ok = a_rifd < 1 and a_ifd < 1
        return "A", ok, ok
    return "ori", ori_rifd < 1 and ori_ifd < 1, False


def _ours(state: tuple[float, float] | None) -> VersionScore:
    return VersionScore(problem="score truncated_away") if state is None else VersionScore(*state)


def _theirs(state: tuple[float, float] | None) -> tuple[float, float]:
    return (NAN, NAN) if state is None else state


def test_paper_profile_decides_as_the_reference_on_every_combination() -> None:
    checked = 0
    for ori, q, a, qa in itertools.product(STATES, repeat=4):
        s_ori, s_q = _ours(ori), _ours(q)
        choice = choose_instruction(s_ori, s_q, Profile.PAPER)
        reflected = _ours(qa) if choice.base is Kind.Q else _ours(a)
        ours = decide(s_ori, s_q, choice, reflected, profile=Profile.PAPER)
        expected = reference_rule(_theirs(ori), _theirs(q), _theirs(a), _theirs(qa))
        assert (str(ours.branch), ours.passes, ours.emitted) == expected, (ori, q, a, qa, ours)
        checked += 1
    assert checked == len(STATES) ** 4 == 83521


def test_default_profile_departs_only_where_a_version_is_unscorable() -> None:
    """Where every version is scored the profiles agree; the default differs on unscorable ones."""
    differ = 0
    for ori, q, a, qa in itertools.product(STATES, repeat=4):
        results = []
        for profile in Profile:
            s_ori, s_q = _ours(ori), _ours(q)
            choice = choose_instruction(s_ori, s_q, profile)
            reflected = _ours(qa) if choice.base is Kind.Q else _ours(a)
            d = decide(s_ori, s_q, choice, reflected, profile=profile)
            results.append((d.branch, d.passes, d.emitted))
        if results[0] != results[1]:
            differ += 1
            assert ori is None, (ori, q, a, qa)
    assert differ > 0


def test_an_unscorable_original_with_a_good_q_is_emitted_only_by_default() -> None:
    ori, q, qa = (
        VersionScore(problem="score truncated_away"),
        VersionScore(0.9, 0.8),
        VersionScore(0.9, 0.5),
    )
    for profile, emitted in ((Profile.DEFAULT, True), (Profile.PAPER, False)):
        choice = choose_instruction(ori, q, profile)
        reflected = qa if choice.base is Kind.Q else VersionScore(0.5, 0.5)
        assert decide(ori, q, choice, reflected, profile=profile).emitted is emitted


def test_the_merged_original_is_the_stored_final_version() -> None:
    ori, q = VersionScore(0.8, 0.7), VersionScore(0.5, 0.5)
    choice = choose_instruction(ori, q, Profile.PAPER)
    d = decide(ori, q, choice, VersionScore(0.9, 0.9), profile=Profile.PAPER, ori_kind=Kind.M)
    assert (d.branch, d.final_kind) == (Kind.ORI, Kind.M)


def test_top_fraction_two_percent_of_wizardlm_keeps_926_under_paper() -> None:
    k_paper, keep_paper = top_k_rule(Profile.PAPER, 46325, None, 0.02)
    k_default, keep_default = top_k_rule(Profile.DEFAULT, 46325, None, 0.02)
    assert (k_paper, k_default) == (926, 927)
    assert keep_paper(1.0) and not keep_default(1.0)
    assert top_k_rule(Profile.PAPER, 30, None, 0.1)[0] == 3  # float noise moves no row
    assert top_k_rule(Profile.DEFAULT, 30, None, 0.1)[0] == 3
