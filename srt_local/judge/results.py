"""Stored judgements read back as figures: one Summary per (judge, against, seed) of a run."""

from __future__ import annotations

from dataclasses import dataclass

from srt_local.judge.stats import N_BOOT, SampleOutcome, Summary, summarise
from srt_local.store import Store


@dataclass(frozen=True)
class JudgedComparison:
    """A run's kept samples judged by one judge against one kind of rival."""

    run_id: int
    against: str
    judge_key: str
    seed: int  # the random draw's (0 against the original)
    judge: str  # model names of the calls, e.g. 'llama3.1:8b (ollama)'
    samples: list[SampleOutcome]
    incomplete: int  # samples with an order missing or failed: left out of the figures
    summary: Summary
    boot_seed: int


def judged_comparisons(
    store: Store, run_id: int, boot_seed: int | None = None, n_boot: int = N_BOOT
) -> list[JudgedComparison]:
    """Every comparison stored for the run, original before random. The bootstrap is seeded
    `boot_seed`, or else by the comparison's own seed (the random draw's; 0 against the
    original), so `srt judge` and `srt report` print the same intervals for the same data."""
    groups = store.query(
        "SELECT against, judge_key, seed, count(DISTINCT sample_id) FROM judgements "
        "WHERE run_id = ? GROUP BY against, judge_key, seed "
        "ORDER BY against = 'random', judge_key, seed",
        [run_id],
    )
    found: list[JudgedComparison] = []
    for against, key, seed, _n in groups:
        rows = store.query(
            "SELECT j.sample_id, "
            "max(j.outcome) FILTER (WHERE j.selected_side = 'A') AS first, "
            "max(j.outcome) FILTER (WHERE j.selected_side = 'B') AS second, "
            "max(j.selected_chars - j.other_chars) AS diff, "
            "any_value(d.branch), any_value(d.ifd_final) "
            "FROM judgements j LEFT JOIN decisions d USING (run_id, sample_id) "
            "WHERE j.run_id = ? AND j.against = ? AND j.judge_key = ? AND j.seed = ? "
            "GROUP BY j.sample_id ORDER BY j.sample_id",
            [run_id, against, key, seed],
        )
        samples: list[SampleOutcome] = []
        incomplete = 0
        for sid, first, second, diff, branch, ifd in rows:
            if first in (None, "failed") or second in (None, "failed"):
                incomplete += 1
                continue
            samples.append(SampleOutcome(int(sid), first, second, int(diff), branch or "", ifd))
        names = store.query(
            "SELECT DISTINCT model || ' (' || backend || ')' FROM judge_calls "
            "WHERE run_id = ? AND judge_key = ? ORDER BY 1",
            [run_id, key],
        )
        boot = int(seed) if boot_seed is None else boot_seed
        found.append(
            JudgedComparison(
                run_id=run_id,
                against=str(against),
                judge_key=str(key),
                seed=int(seed),
                judge=", ".join(str(n[0]) for n in names) or str(key),
                samples=samples,
                incomplete=incomplete,
                summary=summarise(samples, boot, n_boot),
                boot_seed=boot,
            )
        )
    return found
