"""Import a dataset file into the store: a `datasets` row, its distinct `samples`, its bad records.

Everything is written in one transaction, so an import is whole or absent. Exact duplicates (the
same instruction, input and output) are stored once, with `n_copies`; bad records go to
`import_errors` with their location, field, reason and (truncated) text. With `strict`, one bad
record refuses the whole file and nothing is written. Importing the same file content under a name
it already has is a no-op that says so; a different file under a taken name is an error.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from srt_local.formats import DatasetFileError, ReadResult, RecordError, read_records
from srt_local.pairs import Pair
from srt_local.store import Store


class ImportProblem(ValueError):
    """The import cannot be made as asked."""


class DatasetExistsError(ImportProblem):
    """A dataset of that name already holds different content."""


@dataclass
class ImportReport:
    """What an import did (or, when `refused` or `already_imported`, why it did nothing)."""

    name: str
    path: Path
    format: str
    dataset_id: int | None = None
    n_records: int = 0
    n_imported: int = 0
    n_duplicates: int = 0
    n_rejected: int = 0
    n_turns_skipped: int = 0
    errors: list[RecordError] = field(default_factory=list)
    already_imported: bool = False
    refused: str | None = None  # why nothing was written, if it was refused

    def __str__(self) -> str:
        if self.refused:
            return f"{self.name}: refused: {self.refused}"
        head = f"{self.name}: already imported; " if self.already_imported else f"{self.name}: "
        return (
            f"{head}{self.n_records} records, {self.n_imported} imported, "
            f"{self.n_duplicates} duplicates, {self.n_rejected} rejected, "
            f"{self.n_turns_skipped} turns skipped ({self.format})"
        )


def import_dataset(
    store: Store, path: Path, fmt: str = "auto", name: str | None = None, strict: bool = False
) -> ImportReport:
    """Read `path` and store its records as a dataset named `name` (default: the file's stem).

    Raises DatasetFileError when the file cannot be read, DatasetExistsError (an ImportProblem)
    when the name is taken by other content. A strict import with bad records, or a file with no
    good record, returns a report with `refused` set and writes nothing.
    """
    name = name if name is not None else path.stem
    if not name.strip():
        raise ImportProblem("a dataset needs a non-empty name (--name)")
    sha256 = _sha256(path)
    existing = _existing(store, name, sha256, path)
    if existing is not None:
        return existing
    result = read_records(path, fmt)
    report = ImportReport(
        name=name,
        path=path,
        format=result.format,
        n_records=result.n_records,
        n_rejected=result.n_rejected,
        n_turns_skipped=result.turns_skipped,
        errors=result.errors,
    )
    if strict and result.errors:
        report.refused = (
            f"--strict: {result.n_rejected} of {result.n_records} records are bad; nothing written"
        )
        return report
    if not result.records:
        report.refused = f"no valid record among {result.n_records}; nothing written"
        return report
    samples = _distinct(result)
    report.n_imported = len(samples)
    report.n_duplicates = len(result.records) - len(samples)
    report.dataset_id = _write(store, report, sha256, samples)
    return report


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise DatasetFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return digest.hexdigest()


def _existing(store: Store, name: str, sha256: str, path: Path) -> ImportReport | None:
    rows = store.query_dicts("SELECT * FROM datasets WHERE name = ?", [name])
    if not rows:
        return None
    row = rows[0]
    if row["source_sha256"] != sha256:
        raise DatasetExistsError(
            f"a dataset named {name!r} already exists (from {row['source_path']}, imported "
            f"{row['imported_at']:%Y-%m-%d %H:%M}) with different content; import this file "
            "under another name with --name"
        )
    return ImportReport(
        name=name,
        path=path,
        format=row["format"],
        dataset_id=row["dataset_id"],
        n_records=row["n_records"],
        n_imported=row["n_imported"],
        n_duplicates=row["n_duplicates"],
        n_rejected=row["n_rejected"],
        n_turns_skipped=row["n_turns_skipped"],
        already_imported=True,
    )


@dataclass
class _Sample:
    location: str
    pair: Pair
    n_copies: int = 1


def _distinct(result: ReadResult) -> dict[str, _Sample]:
    """The good records by pair hash, in order of first appearance, with their copy counts."""
    samples: dict[str, _Sample] = {}
    for record in result.records:
        key = record.pair.hash
        if key in samples:
            samples[key].n_copies += 1
        else:
            samples[key] = _Sample(record.location, record.pair)
    return samples


def _write(store: Store, report: ImportReport, sha256: str, samples: dict[str, _Sample]) -> int:
    import pyarrow as pa

    new_samples = pa.table(
        {
            "position": pa.array(range(len(samples)), pa.int32()),
            "location": [s.location for s in samples.values()],
            "instruction": [s.pair.instruction for s in samples.values()],
            "input": [s.pair.input for s in samples.values()],
            "output": [s.pair.output for s in samples.values()],
            "pair_hash": list(samples),
            "n_copies": pa.array([s.n_copies for s in samples.values()], pa.int32()),
        }
    )
    new_errors = pa.table(
        {
            "location": pa.array([e.location for e in report.errors], pa.string()),
            "field": pa.array([e.field for e in report.errors], pa.string()),
            "reason": pa.array([e.reason for e in report.errors], pa.string()),
            "record": pa.array([e.raw for e in report.errors], pa.string()),
        }
    )
    # Registered outside the transaction: unregistering inside an aborted one would fail and
    # hide the error that aborted it.
    with store.lock:
        store.con.register("_new_samples", new_samples)
        store.con.register("_new_errors", new_errors)
        try:
            with store.transaction() as con:
                row = con.execute(
                    "INSERT INTO datasets (name, source_path, source_sha256, format, n_records, "
                    "n_imported, n_duplicates, n_rejected, n_turns_skipped) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING dataset_id",
                    [
                        report.name,
                        str(report.path.resolve()),
                        sha256,
                        report.format,
                        report.n_records,
                        report.n_imported,
                        report.n_duplicates,
                        report.n_rejected,
                        report.n_turns_skipped,
                    ],
                ).fetchone()
                assert row is not None
                dataset_id = int(row[0])
                con.execute(
                    "INSERT INTO samples (dataset_id, position, location, instruction, input, "
                    "output, pair_hash, n_copies) SELECT ?, position, location, instruction, "
                    "input, output, pair_hash, n_copies FROM _new_samples ORDER BY position",
                    [dataset_id],
                )
                con.execute(
                    "INSERT INTO import_errors (dataset_id, location, field, reason, record) "
                    "SELECT ?, location, field, reason, record FROM _new_errors",
                    [dataset_id],
                )
        finally:
            store.con.unregister("_new_samples")
            store.con.unregister("_new_errors")
    return dataset_id


DEMO_NAME = "demo"


def demo_file() -> Path:
    """The small dataset shipped with srt-local, for a first run (`srt demo`, the TUI)."""
    from importlib import resources

    return Path(str(resources.files("srt_local").joinpath("data/demo.jsonl")))


def import_demo(store: Store) -> ImportReport:
    """Import the shipped demo dataset as 'demo' (importing it again changes nothing)."""
    return import_dataset(store, demo_file(), name=DEMO_NAME)
