"""The reference decision rule of Selective Reflection-Tuning, per sample, as pure functions.

Stage 1 keeps the reflected instruction Q when IFD(Q) > IFD(ori). Stage 2 keeps the reflected response
(QA on Q, A on ori) when its r-IFD is below the base's. A kept sample needs IFD < 1 and r-IFD < 1.
Ties keep the unreflected side, as the reference's strict comparisons do. A version that is missing or
could not be scored never passes a comparison: it is named in the reason instead.

The two profiles differ only where a version is unscorable. `default` lets a scorable Q win over an
unscorable original, and a scorable reflected response win over an unscorable base. `paper` treats
an unscorable score as the reference code's NaN does: every comparison with it is false, so an
unscorable original always leads to the original branch and its response is never kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from srt_local.run.vocabulary import RESPONSE_OF, RESPONSE_REFLECTED, Kind, Profile


@dataclass(frozen=True)
class VersionScore:
    """A version's scores, or why it has none (missing, a reflection failure, a scoring status)."""

    ifd: float | None = None
    rifd: float | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None and self.ifd is not None and self.rifd is not None


@dataclass(frozen=True)
class InstructionChoice:
    base: Kind  # Q or ori: the version whose response stage 2 reflects
    ifd_margin: float | None  # IFD(Q) - IFD(ori)
    reason: str


@dataclass(frozen=True)
class Decision:
    branch: Kind  # QA | Q | A | ori
    final_kind: Kind
    ifd_ori: float | None
    ifd_q: float | None
    rifd_base: float | None
    rifd_reflected: float | None
    ifd_final: float | None
    rifd_final: float | None
    ifd_margin: float | None
    rifd_margin: float | None
    passes: bool
    emitted: bool
    reason: str


def choose_instruction(
    ori: VersionScore, q: VersionScore, profile: Profile = Profile.DEFAULT
) -> InstructionChoice:
    """Stage 1: keep Q only when its IFD rises above the original's."""
    if ori.ok and q.ok:
        assert ori.ifd is not None and q.ifd is not None
        margin = q.ifd - ori.ifd
        if margin > 0:
            return InstructionChoice(Kind.Q, margin, "IFD rose with the reflected instruction")
        return InstructionChoice(Kind.ORI, margin, "IFD did not rise; original instruction kept")
    if not q.ok and ori.ok:
        return InstructionChoice(Kind.ORI, None, f"reflected instruction unusable: {q.problem}")
    if q.ok and not ori.ok and profile is Profile.DEFAULT:
        return InstructionChoice(Kind.Q, None, f"original unscorable ({ori.problem}); Q kept")
    if q.ok and not ori.ok:
        return InstructionChoice(
            Kind.ORI, None, f"original unscorable ({ori.problem}); Q not taken"
        )
    return InstructionChoice(Kind.ORI, None, f"neither scorable: ori {ori.problem}; Q {q.problem}")


def decide(
    ori: VersionScore,
    q: VersionScore,
    choice: InstructionChoice,
    reflected: VersionScore,
    emit_unreflected: bool = False,
    profile: Profile = Profile.DEFAULT,
    ori_kind: Kind = Kind.ORI,
) -> Decision:
    """Stage 2 and the final filter, given stage 1's choice and the reflected response's scores.

    `ori_kind` names the version that stood for the original (M when the merge stage made one).
    """
    base = ori if choice.base is Kind.ORI else q
    reflected_kind = RESPONSE_OF[choice.base]
    reasons = [choice.reason]
    rifd_margin = None
    if base.ok and reflected.ok:
        assert base.rifd is not None and reflected.rifd is not None
        rifd_margin = reflected.rifd - base.rifd
        if rifd_margin < 0:
            final_kind, final = reflected_kind, reflected
            reasons.append("r-IFD fell with the reflected response")
        else:
            final_kind, final = choice.base, base
            reasons.append("r-IFD did not fall; response kept")
    elif reflected.ok and not base.ok and profile is Profile.DEFAULT:
        final_kind, final = reflected_kind, reflected
        reasons.append(f"base unscorable ({base.problem}); reflected response kept")
    elif not reflected.ok:
        final_kind, final = choice.base, base
        reasons.append(f"reflected response unusable: {reflected.problem}")
    else:
        final_kind, final = choice.base, base
        reasons.append(f"base unscorable ({base.problem}); reflected response not taken")

    passes = bool(
        final.ok
        and final.ifd is not None
        and final.rifd is not None
        and final.ifd < 1
        and final.rifd < 1
    )
    if not final.ok:
        reasons.append(f"final version unscorable: {final.problem}")
    elif not passes:
        reasons.append(f"filtered: IFD {final.ifd:.3f}, r-IFD {final.rifd:.3f} (both must be < 1)")
    response_reflected = final_kind in RESPONSE_REFLECTED
    stored_kind = ori_kind if final_kind is Kind.ORI else final_kind
    emitted = passes and (response_reflected or emit_unreflected)
    if passes and not emitted:
        reasons.append("passes, but its response was not reflected (not emitted by default)")
    return Decision(
        branch=final_kind,
        final_kind=stored_kind,
        ifd_ori=ori.ifd,
        ifd_q=q.ifd,
        rifd_base=base.rifd,
        rifd_reflected=reflected.rifd,
        ifd_final=final.ifd,
        rifd_final=final.rifd,
        ifd_margin=choice.ifd_margin,
        rifd_margin=rifd_margin,
        passes=passes,
        emitted=emitted,
        reason="; ".join(reasons),
    )
