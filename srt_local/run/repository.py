"""Every SQL statement of a run, in one place: the engine reads and writes the store only here.

Each write is one transaction, so a crash or Ctrl-C loses at most the unit of work in flight.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from srt_local.decision import Decision
from srt_local.errors import SrtError
from srt_local.pairs import Pair
from srt_local.run.vocabulary import FINISHED, REUSABLE, Kind, Outcome, Profile, RunStatus
from srt_local.store import Store
from srt_local.teacher_log import record_call
from srt_local.teachers.base import TeacherCall


class PipelineError(SrtError):
    """A run that cannot start or go on (unknown dataset, dead teacher...)."""


@dataclass(frozen=True)
class RunRow:
    """A `runs` row, typed; `config` is the run's stored JSON, never changed in place."""

    run_id: int
    dataset_id: int
    teacher_name: str
    teacher_key: str
    student_name: str
    student_sha256: str
    template: str
    max_tokens: int
    sample_limit: int | None
    emit_unreflected: bool
    status: str
    config: Mapping[str, Any]
    profile: Profile = Profile.DEFAULT

    @property
    def prompt_set(self) -> str | None:
        """The prompt set the run asked for (`--prompts`), None for each teacher's own."""
        value = self.config.get("prompts")
        return str(value) if value else None

    @property
    def full_grid(self) -> bool:
        return bool(self.config.get("full_grid", False))

    @property
    def concurrency(self) -> int | None:
        value = self.config.get("concurrency")
        return int(value) if value else None

    @property
    def teacher_to_open(self) -> str:
        """The teacher this run asked for, or the one `auto` resolved to when it first ran."""
        return str(self.config.get("resolved_teacher") or self.teacher_name)


@dataclass(frozen=True)
class RunSettings:
    """What names a run: a request with the same settings finds the run again."""

    dataset_id: int
    teacher_name: str
    student_name: str
    student_sha256: str
    template: str
    max_tokens: int
    sample_limit: int | None
    emit_unreflected: bool
    full_grid: bool
    profile: Profile = Profile.DEFAULT
    prompt_set: str | None = None


@dataclass
class StoredWork:
    """What earlier executions of a run left: versions, final failures and decided samples."""

    versions: dict[tuple[int, Kind], Pair] = field(default_factory=dict)
    failures: dict[tuple[int, Kind], Outcome] = field(default_factory=dict)
    decided: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class SummaryCounts:
    kept: int
    rejected: int
    by_branch: dict[str, int]


class RunRecords:
    """The `runs` rows: find, make, load, mark and sum up a run."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # ------------------------------------------------------------ finding and making runs

    def find_dataset(self, name: str) -> int:
        rows = self.store.query("SELECT dataset_id FROM datasets WHERE name = ?", [name])
        if not rows:
            known = [r[0] for r in self.store.query("SELECT name FROM datasets ORDER BY name")]
            hint = ", ".join(known) if known else "none yet: `srt import FILE` first"
            raise PipelineError(
                f"no dataset named {name!r} in {self.store.path} (datasets: {hint})"
            )
        return int(rows[0][0])

    def find_run(self, settings: RunSettings) -> int | None:
        """The latest run with these settings that may be taken up again."""
        rows = self.store.query(
            "SELECT run_id FROM runs WHERE dataset_id = ? AND teacher_name = ? "
            "AND student_sha256 = ? AND template = ? AND max_tokens = ? "
            "AND sample_limit IS NOT DISTINCT FROM ? AND emit_unreflected = ? "
            "AND json_extract(config, '$.full_grid')::BOOLEAN = ? "
            "AND coalesce(profile, 'default') = ? "
            "AND json_extract_string(config, '$.prompts') IS NOT DISTINCT FROM ? "
            "AND status IN ? ORDER BY run_id DESC LIMIT 1",
            [
                settings.dataset_id,
                settings.teacher_name,
                settings.student_sha256,
                settings.template,
                settings.max_tokens,
                settings.sample_limit,
                settings.emit_unreflected,
                settings.full_grid,
                settings.profile,
                settings.prompt_set,
                sorted(REUSABLE),
            ],
        )
        return int(rows[0][0]) if rows else None

    def create_run(self, settings: RunSettings, config: Mapping[str, Any]) -> int:
        """A new run, paused until it first executes."""
        with self.store.transaction() as con:
            row = con.execute(
                "INSERT INTO runs (dataset_id, teacher_name, teacher_key, student_name, "
                "student_sha256, template, max_tokens, sample_limit, emit_unreflected, config, "
                "status, profile) VALUES (?, ?, '', ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING run_id",
                [
                    settings.dataset_id,
                    settings.teacher_name,
                    settings.student_name,
                    settings.student_sha256,
                    settings.template,
                    settings.max_tokens,
                    settings.sample_limit,
                    settings.emit_unreflected,
                    json.dumps({**config, "prompts": settings.prompt_set}),
                    RunStatus.PAUSED,
                    settings.profile,
                ],
            ).fetchone()
        assert row is not None
        return int(row[0])

    def load_run(self, run_id: int) -> RunRow:
        rows = self.store.query_dicts("SELECT * FROM runs WHERE run_id = ?", [run_id])
        if not rows:
            raise PipelineError(f"no run {run_id} in {self.store.path}")
        r = rows[0]
        return RunRow(
            run_id=int(r["run_id"]),
            dataset_id=int(r["dataset_id"]),
            teacher_name=str(r["teacher_name"]),
            teacher_key=str(r["teacher_key"]),
            student_name=str(r["student_name"]),
            student_sha256=str(r["student_sha256"]),
            template=str(r["template"]),
            max_tokens=int(r["max_tokens"]),
            sample_limit=r["sample_limit"],
            emit_unreflected=bool(r["emit_unreflected"]),
            status=str(r["status"]),
            config=json.loads(r["config"]),
            profile=Profile(r.get("profile") or Profile.DEFAULT),
        )

    # ------------------------------------------------------------ the run's row

    def set_status(self, run_id: int, status: RunStatus, error: str | None = None) -> None:
        with self.store.transaction() as con:
            con.execute(
                "UPDATE runs SET status = ?, error = ?, updated_at = current_timestamp, "
                "finished_at = CASE WHEN ? THEN current_timestamp ELSE NULL END WHERE run_id = ?",
                [status, error, status in FINISHED, run_id],
            )

    def cancel(self, run_id: int) -> None:
        """Mark a run cancelled: it is kept for inspection but never resumed."""
        self.set_status(run_id, RunStatus.CANCELLED)

    def set_teacher(self, run: RunRow, teacher_key: str, resolved: str) -> RunRow:
        """Record the key and name of the teacher the run resolved to; the updated row."""
        config = {**run.config, "resolved_teacher": resolved}
        with self.store.transaction() as con:
            con.execute(
                "UPDATE runs SET teacher_key = ?, config = ? WHERE run_id = ?",
                [teacher_key, json.dumps(config), run.run_id],
            )
        return self.load_run(run.run_id)

    def summary_counts(self, run_id: int) -> SummaryCounts:
        """Kept (the `kept_samples` view, overrides applied), rejected and samples per branch."""
        rows = self.store.query(
            "SELECT d.branch, k.sample_id IS NOT NULL, count(*) FROM decisions d "
            "LEFT JOIN kept_samples k USING (run_id, sample_id) WHERE d.run_id = ? GROUP BY ALL",
            [run_id],
        )
        by_branch: Counter[str] = Counter()
        kept = rejected = 0
        for branch, is_kept, n in rows:
            by_branch[str(branch)] += int(n)
            if is_kept:
                kept += int(n)
            else:
                rejected += int(n)
        return SummaryCounts(kept, rejected, dict(by_branch))


class RunRepository(RunRecords):
    """Every read and write of a run over one store: its row (`RunRecords`) and its work."""

    # ------------------------------------------------------------ loading work

    def samples(self, run: RunRow) -> list[tuple[int, Pair]]:
        """The run's samples in dataset order, cut to its limit."""
        sql = (
            "SELECT sample_id, instruction, input, output FROM samples WHERE dataset_id = ? "
            "ORDER BY position"
        )
        params: list[Any] = [run.dataset_id]
        if run.sample_limit is not None:
            sql += " LIMIT ?"
            params.append(run.sample_limit)
        return [(int(r[0]), Pair(r[1], r[2], r[3])) for r in self.store.query(sql, params)]

    def stored_work(self, run_id: int, teacher_key: str, sample_ids: Sequence[int]) -> StoredWork:
        """The versions and final failures this teacher made for these samples, and the decided."""
        work = StoredWork()
        ids = list(sample_ids)
        for sid, kind, ins, inp, out in self.store.query(
            "SELECT sample_id, kind, instruction, input, output FROM versions "
            "WHERE teacher_key = ? AND sample_id IN (SELECT unnest(?))",
            [teacher_key, ids],
        ):
            work.versions[(int(sid), Kind(kind))] = Pair(ins, inp, out)
        for sid, kind, outcome in self.store.query(
            "SELECT sample_id, kind, outcome FROM reflection_failures "
            "WHERE teacher_key = ? AND sample_id IN (SELECT unnest(?))",
            [teacher_key, ids],
        ):
            work.failures[(int(sid), Kind(kind))] = Outcome(outcome)
        work.decided = {
            int(r[0])
            for r in self.store.query("SELECT sample_id FROM decisions WHERE run_id = ?", [run_id])
        }
        return work

    def store_originals(self, dataset_id: int) -> None:
        """The ori versions are the samples themselves, kept beside the reflections for SQL."""
        with self.store.transaction() as con:
            con.execute(
                "INSERT INTO versions (sample_id, teacher_key, kind, instruction, input, output, "
                "pair_hash) SELECT sample_id, '', ?, instruction, input, output, pair_hash "
                "FROM samples WHERE dataset_id = ? ON CONFLICT DO NOTHING",
                [Kind.ORI, dataset_id],
            )

    # ------------------------------------------------------------ saving work

    def save_calls(
        self,
        sample_id: int | None,
        source_kind: Kind,
        teacher_key: str,
        calls: Sequence[TeacherCall],
    ) -> list[int]:
        """Teacher calls that made nothing (a fatal error, or `srt reflect`); their call ids."""
        if not calls:
            return []
        with self.store.transaction() as con:
            return [record_call(con, c, sample_id, source_kind, teacher_key) for c in calls]

    def save_reflection(
        self,
        sample_id: int,
        source_kind: Kind,
        kind: Kind,
        teacher_key: str,
        calls: Sequence[TeacherCall],
        made: Pair | None,
        critique: str | None,
        failure: Outcome | None,
    ) -> None:
        """A reflection's calls with the version they made, or its final failure, as one unit.

        `made` and `failure` both None: the calls only (transport errors, retried by a next run).
        """
        with self.store.transaction() as con:
            call_id = None
            for call in calls:
                call_id = record_call(con, call, sample_id, source_kind, teacher_key)
            if made is not None:
                con.execute(
                    "INSERT INTO versions (sample_id, teacher_key, kind, instruction, input, "
                    "output, pair_hash, critique, call_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    [
                        sample_id,
                        teacher_key,
                        kind,
                        made.instruction,
                        made.input,
                        made.output,
                        made.hash,
                        critique,
                        call_id,
                    ],
                )
            elif failure is not None:
                con.execute(
                    "INSERT INTO reflection_failures (sample_id, teacher_key, kind, outcome, "
                    "last_call_id) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    [sample_id, teacher_key, kind, failure, call_id],
                )

    def save_decision(self, run_id: int, sample_id: int, d: Decision) -> None:
        with self.store.transaction() as con:
            con.execute(
                "INSERT INTO decisions (run_id, sample_id, branch, final_kind, ifd_ori, ifd_q, "
                "rifd_base, rifd_reflected, ifd_final, rifd_final, ifd_margin, rifd_margin, "
                "passes, emitted, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                [
                    run_id,
                    sample_id,
                    d.branch,
                    d.final_kind,
                    d.ifd_ori,
                    d.ifd_q,
                    d.rifd_base,
                    d.rifd_reflected,
                    d.ifd_final,
                    d.rifd_final,
                    d.ifd_margin,
                    d.rifd_margin,
                    d.passes,
                    d.emitted,
                    d.reason,
                ],
            )
            con.execute("UPDATE runs SET updated_at = current_timestamp WHERE run_id = ?", [run_id])
