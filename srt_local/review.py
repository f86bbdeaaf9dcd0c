"""Reading a run's decisions back for review, and a person's override of one decision.

Pure SQL over the store (no screen code): the TUI's Browse, Distributions and Datasets views call
these from worker threads. An override is stored in `decisions.override`; the `kept_samples` view
(the one definition of "kept") honours it, and so the `selection` view and every export.
Everything here returns data; the screens and commands turn it into labels.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from srt_local.run.vocabulary import Kind, Override
from srt_local.store import Store

if TYPE_CHECKING:
    # Types only: `srt status` reads KEPT_SQL from here and need not load pyarrow to start.
    import pyarrow as pa

OVERRIDES: tuple[Override, ...] = tuple(Override)
BRANCHES: tuple[Kind, ...] = (Kind.QA, Kind.Q, Kind.A, Kind.ORI)
OUTCOMES = ("all", "kept", "dropped", "overridden")  # the Browse filter's choices

# Whether decision `d` is kept: read from the store's `kept_samples` view, where "kept" is defined.
KEPT_SQL = (
    "EXISTS (SELECT 1 FROM kept_samples k WHERE k.run_id = d.run_id AND k.sample_id = d.sample_id)"
)

# The scores table holds one row per pair and scoring path (host or device reduction); a pair
# scored on both shows the host's (the CPU reference).
ONE_SCORE = (
    "(SELECT DISTINCT ON (student_sha256, template, max_tokens, pair_hash) * FROM scores "
    "ORDER BY student_sha256, template, max_tokens, pair_hash, score_path = 'host' DESC)"
)

# Sort keys the Browse view offers, and the SQL each one orders by.
# "sample" is dataset order: an import inserts a dataset's samples in position order, so their ids
# follow it, and the page's order needs no join with the samples' texts.
SORTS: dict[str, str] = {
    "sample": "d.sample_id",
    "ifd ori": "d.ifd_ori",
    "ifd Q": "d.ifd_q",
    "rifd base": "d.rifd_base",
    "rifd refl": "d.rifd_reflected",
    "Δ ifd": "d.ifd_margin",
    "Δ rifd": "d.rifd_margin",
    "branch": "d.branch",
}


def set_override(store: Store, run_id: int, sample_id: int, value: str | None) -> None:
    """Accept or reject one sample of a run by hand (None clears it); export follows it."""
    if value is not None and value not in OVERRIDES:
        raise ValueError(f"override must be one of {', '.join(OVERRIDES)} or None, not {value!r}")
    with store.transaction() as con:
        rows = con.execute(
            "UPDATE decisions SET override = ? WHERE run_id = ? AND sample_id = ? "
            "RETURNING sample_id",
            [value, run_id, sample_id],
        ).fetchall()
        if not rows:
            raise LookupError(f"run {run_id} has no decision for sample {sample_id}")


# ---------------------------------------------------------------- browse


@dataclass(frozen=True)
class BrowseFilter:
    """Which decisions of a run to list, and in what order."""

    branch: str | None = None  # one of BRANCHES, or None for all
    outcome: str = "all"  # one of OUTCOMES
    text: str = ""  # a case-insensitive substring of the original instruction or response
    sort: str = "sample"  # a key of SORTS
    descending: bool = False

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition (on decisions d and samples s) and its parameters."""
        if self.branch is not None and self.branch not in BRANCHES:
            raise ValueError(f"branch must be one of {', '.join(BRANCHES)}, not {self.branch!r}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {self.outcome!r}")
        clauses = ["d.run_id = ?"]
        params: list[Any] = []
        if self.branch is not None:
            clauses.append("d.branch = ?")
            params.append(self.branch)
        if self.outcome == "kept":
            clauses.append(KEPT_SQL)
        elif self.outcome == "dropped":
            clauses.append(f"NOT {KEPT_SQL}")
        elif self.outcome == "overridden":
            clauses.append("d.override IS NOT NULL")
        if self.text:
            clauses.append("(s.instruction ILIKE ? ESCAPE '\\' OR s.output ILIKE ? ESCAPE '\\')")
            pattern = "%" + self.text.replace("\\", "\\\\").replace("%", "\\%") + "%"
            params += [pattern, pattern]
        return " AND ".join(clauses), params

    def order_by(self) -> str:
        if self.sort not in SORTS:
            raise ValueError(f"sort must be one of {', '.join(SORTS)}, not {self.sort!r}")
        direction = "DESC" if self.descending else "ASC"
        # Missing scores sort last either way; dataset order breaks ties so pages are stable.
        return f"{SORTS[self.sort]} {direction} NULLS LAST, d.sample_id"


def browse_page(
    store: Store, run_id: int, flt: BrowseFilter, limit: int, offset: int = 0
) -> tuple[pa.Table, int]:
    """One page of a run's decisions as an Arrow table, and how many match the filter in all.

    Columns: id, branch, the scores (ifd ori, ifd Q, rifd base, rifd refl, Δ ifd, Δ rifd),
    emitted and kept (booleans), override (NULL when none) and the original instruction.

    Paged in SQL, and quick at a million decisions: the page's ids are chosen from the decisions
    alone (the samples' texts are joined only when the filter searches them), and the shown
    columns are computed for the page's rows only.
    """
    where, params = flt.where()
    joined = " JOIN samples s USING (sample_id)" if flt.text else ""
    base = f"FROM decisions d{joined} WHERE {where}"
    order = flt.order_by()
    page = f"SELECT d.sample_id {base} ORDER BY {order} LIMIT ? OFFSET ?"
    sql = (
        'SELECT d.sample_id AS id, d.branch, d.ifd_ori AS "ifd ori", d.ifd_q AS "ifd Q", '
        'd.rifd_base AS "rifd base", d.rifd_reflected AS "rifd refl", d.ifd_margin AS "Δ ifd", '
        'd.rifd_margin AS "Δ rifd", d.emitted, d.override, '
        f"{KEPT_SQL} AS kept, s.instruction "
        f"FROM ({page}) p JOIN decisions d ON d.run_id = ? AND d.sample_id = p.sample_id "
        f"JOIN samples s ON s.sample_id = p.sample_id ORDER BY {order}"
    )
    table = store.query_arrow(sql, [run_id, *params, limit, offset, run_id])
    total = store.query(f"SELECT count(*) {base}", [run_id, *params])
    return table, int(total[0][0])


# ---------------------------------------------------------------- one sample


@dataclass(frozen=True)
class VersionView:
    """One version of a sample with the run's student scores of it."""

    kind: str  # ori | M | Q | A | QA
    instruction: str
    input: str
    output: str
    critique: str | None
    ifd: float | None
    rifd: float | None
    score_status: str | None  # None when the run's student has not scored it


@dataclass(frozen=True)
class SampleDetail:
    """Everything the Browse view shows about one decision."""

    run_id: int
    sample_id: int
    location: str
    branch: str
    final_kind: str
    reason: str
    passes: bool
    emitted: bool
    override: str | None
    kept: bool  # as the store's `kept_samples` view says
    ifd_margin: float | None
    rifd_margin: float | None
    versions: dict[str, VersionView]
    failures: dict[str, str] = field(default_factory=dict)  # kind -> why it could not be made

    @property
    def merged(self) -> VersionView | None:
        """The merged original (paper profile: instruction and input made one by the teacher),
        shown beside the imported original; None where the run made none."""
        return self.versions.get(Kind.M)

    @property
    def base(self) -> VersionView:
        """The version that stood for the original in the method: the merged one, if made."""
        return self.merged or self.versions[Kind.ORI]

    def reflected_kinds(self) -> list[str]:
        """The reflected versions that exist, the one the decision stands on first."""
        order: list[str] = [k for k in (Kind.QA, Kind.Q, Kind.A) if k in self.versions]
        if self.final_kind in order:
            order.remove(self.final_kind)
            order.insert(0, self.final_kind)
        return order


def sample_detail(store: Store, run_id: int, sample_id: int) -> SampleDetail:
    """A decision with the texts of every version, their scores and the teacher's critiques."""
    rows = store.query_dicts(
        f"SELECT d.*, {KEPT_SQL} AS kept, s.location, r.teacher_key, r.student_sha256, "
        "r.template, r.max_tokens "
        "FROM decisions d JOIN samples s USING (sample_id) JOIN runs r USING (run_id) "
        "WHERE d.run_id = ? AND d.sample_id = ?",
        [run_id, sample_id],
    )
    if not rows:
        raise LookupError(f"run {run_id} has no decision for sample {sample_id}")
    d = rows[0]
    versions: dict[str, VersionView] = {}
    for v in store.query_dicts(
        "SELECT v.kind, v.instruction, v.input, v.output, v.critique, "
        "sc.ifd_ppl, sc.rifd_ppl, sc.status "
        f"FROM versions v LEFT JOIN {ONE_SCORE} sc ON sc.pair_hash = v.pair_hash "
        "AND sc.student_sha256 = ? AND sc.template = ? AND sc.max_tokens = ? "
        "WHERE v.sample_id = ? AND (v.kind = ? OR v.teacher_key = ?)",
        [
            d["student_sha256"],
            d["template"],
            d["max_tokens"],
            sample_id,
            Kind.ORI,
            d["teacher_key"],
        ],
    ):
        versions[v["kind"]] = VersionView(
            kind=v["kind"],
            instruction=v["instruction"],
            input=v["input"],
            output=v["output"],
            critique=v["critique"],
            ifd=v["ifd_ppl"],
            rifd=v["rifd_ppl"],
            score_status=v["status"],
        )
    if Kind.ORI not in versions:
        # The pipeline stores no 'ori' version row; the original pair is the sample itself.
        s = store.query_dicts(
            "SELECT s.instruction, s.input, s.output, sc.ifd_ppl, sc.rifd_ppl, sc.status "
            f"FROM samples s LEFT JOIN {ONE_SCORE} sc ON sc.pair_hash = s.pair_hash "
            "AND sc.student_sha256 = ? AND sc.template = ? AND sc.max_tokens = ? "
            "WHERE s.sample_id = ?",
            [d["student_sha256"], d["template"], d["max_tokens"], sample_id],
        )[0]
        versions[Kind.ORI] = VersionView(
            Kind.ORI,
            s["instruction"],
            s["input"],
            s["output"],
            None,
            s["ifd_ppl"],
            s["rifd_ppl"],
            s["status"],
        )
    failures = {
        str(kind): str(outcome)
        for kind, outcome in store.query(
            "SELECT kind, outcome FROM reflection_failures WHERE sample_id = ? AND teacher_key = ?",
            [sample_id, d["teacher_key"]],
        )
    }
    return SampleDetail(
        run_id=run_id,
        sample_id=sample_id,
        location=d["location"],
        branch=d["branch"],
        final_kind=d["final_kind"],
        reason=d["reason"],
        passes=bool(d["passes"]),
        emitted=bool(d["emitted"]),
        override=d["override"],
        kept=bool(d["kept"]),
        ifd_margin=d["ifd_margin"],
        rifd_margin=d["rifd_margin"],
        versions=versions,
        failures=failures,
    )


_TOKENS = re.compile(r"\s+|\w+|[^\w\s]")


def word_diff(old: str, new: str) -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]]:
    """The two texts cut into (text, changed) runs: words removed from `old`, added in `new`."""
    a = _TOKENS.findall(old)
    b = _TOKENS.findall(new)
    left: list[tuple[str, bool]] = []
    right: list[tuple[str, bool]] = []

    def add(side: list[tuple[str, bool]], text: str, changed: bool) -> None:
        if not text:
            return
        if side and side[-1][1] == changed:
            side[-1] = (side[-1][0] + text, changed)
        else:
            side.append((text, changed))

    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        changed = tag != "equal"
        add(left, "".join(a[i1:i2]), changed)
        add(right, "".join(b[j1:j2]), changed)
    return left, right


# ---------------------------------------------------------------- distributions


@dataclass(frozen=True)
class Distributions:
    """A run's scores as columns, for histograms: original against reflected, and the kept ones."""

    ifd_ori: list[float]
    ifd_q: list[float]
    rifd_base: list[float]
    rifd_reflected: list[float]
    ifd_kept: list[float]
    rifd_kept: list[float]
    decided: int
    kept: int


def score_distributions(store: Store, run_id: int) -> Distributions:
    """Every finite score of a run's decisions (NULLs, from failed versions, are left out)."""

    def column(expr: str, where: str = "true") -> list[float]:
        rows = store.query(
            f"SELECT {expr} FROM decisions d WHERE run_id = ? AND {where} "
            f"AND {expr} IS NOT NULL AND isfinite({expr}) ORDER BY sample_id",
            [run_id],
        )
        return [float(r[0]) for r in rows]

    counts = store.query(
        f"SELECT count(*), count(*) FILTER (WHERE {KEPT_SQL}) FROM decisions d WHERE run_id = ?",
        [run_id],
    )[0]
    return Distributions(
        ifd_ori=column("d.ifd_ori"),
        ifd_q=column("d.ifd_q"),
        rifd_base=column("d.rifd_base"),
        rifd_reflected=column("d.rifd_reflected"),
        ifd_kept=column("d.ifd_final", KEPT_SQL),
        rifd_kept=column("d.rifd_final", KEPT_SQL),
        decided=int(counts[0]),
        kept=int(counts[1]),
    )


# ---------------------------------------------------------------- datasets


def datasets_table(store: Store) -> pa.Table:
    """The imported datasets with their counts, newest last."""
    return store.query_arrow(
        "SELECT dataset_id AS id, name, format, n_records AS records, n_imported AS imported, "
        "n_duplicates AS duplicates, n_rejected AS rejected, "
        'n_turns_skipped AS "turns skipped" FROM datasets ORDER BY dataset_id'
    )


def import_errors_page(store: Store, dataset_id: int, limit: int) -> tuple[pa.Table, int]:
    """A dataset's rejected records, one row each (a record's problems joined), in file order,
    capped, and how many rejected records there are: the same count as `datasets.n_rejected`.
    """
    # import_errors holds one row per problem; a record can have several (same location).
    table = store.query_arrow(
        "SELECT location, string_agg(coalesce(field, ''), ', ' ORDER BY rowid) AS field, "
        "string_agg(reason, '; ' ORDER BY rowid) AS reason FROM import_errors "
        "WHERE dataset_id = ? GROUP BY location ORDER BY min(rowid) LIMIT ?",
        [dataset_id, limit],
    )
    total = store.query(
        "SELECT count(DISTINCT location) FROM import_errors WHERE dataset_id = ?", [dataset_id]
    )
    return table, int(total[0][0])
