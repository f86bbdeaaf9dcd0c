"""Import a dataset file into the store: a `datasets` row, its distinct `samples`, its bad records.

The file is streamed (see formats/read.py) and staged in Parquet files, then stored in one
transaction, so an import is whole or absent and its memory does not grow with the file: a million
records import in well under 1 GB. Exact duplicates (the same instruction, input and output) are stored
once, with `n_copies`; they are found with a set of 16-byte digests of the pair hash (about 120
bytes a distinct pair in Python). Bad records go to `import_errors` with their location, field,
reason and (truncated) text. With `strict`, one bad record refuses the whole file and nothing is
written. Importing the same file content under a name it already has is a no-op that says so; a
different file under a taken name is an error.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

from srt_local.errors import SrtError
from srt_local.formats import DatasetFileError, RecordError, RecordStream, SourceRecord
from srt_local.formats.records import DEFAULT_FIELD_CHARS
from srt_local.store import Store

BATCH_ROWS = 20_000  # rows per staged Parquet row group
KEEP_ERRORS = 1_000  # bad records kept in the report for display (all go to the store)


class ImportProblem(SrtError, ValueError):
    """The import cannot be made as asked."""


class DatasetExistsError(ImportProblem):
    """A dataset of that name already holds different content."""


@dataclass
class ImportReport:
    """What an import did (or, when `refused` or `already_imported`, why it did nothing).

    `n_rejected` counts bad records; `n_problems` counts their problems (one line of
    `import_errors` each: a record can have several). `errors` holds the first KEEP_ERRORS.
    """

    name: str
    path: Path
    format: str
    dataset_id: int | None = None
    n_records: int = 0
    n_imported: int = 0
    n_duplicates: int = 0
    n_rejected: int = 0
    n_turns_skipped: int = 0
    n_problems: int = 0
    errors: list[RecordError] = field(default_factory=list)
    already_imported: bool = False
    refused: str | None = None  # why nothing was written, if it was refused
    same_content: list[str] = field(default_factory=list)  # datasets already holding this file

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
    store: Store,
    path: Path,
    fmt: str = "auto",
    name: str | None = None,
    strict: bool = False,
    max_chars: int = DEFAULT_FIELD_CHARS,
) -> ImportReport:
    """Read `path` and store its records as a dataset named `name` (default: the file's stem).

    A field longer than `max_chars` rejects its record (models.toml [limits] import_field_chars).
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
    stream = RecordStream(path, fmt, max_chars)
    report = ImportReport(name=name, path=path, format=stream.format)
    report.same_content = [
        str(r[0])
        for r in store.query(
            "SELECT name FROM datasets WHERE source_sha256 = ? ORDER BY dataset_id", [sha256]
        )
    ]
    _import(store, stream, report, sha256, strict)
    return report


def fast_pair_digest(instruction: str, input: str, output: str) -> bytes:
    """The SHA-256 digest whose hex is `srt_local.pairs.pair_hash` of the same texts.

    The same bytes as `json.dumps([...], ensure_ascii=False)`, built with json's own C string
    encoder without the generic encoder's set-up: at a million pairs this is most of the import's
    time in Python. tests/test_import.py checks it against pair_hash.
    """
    blob = (
        "["
        + encode_basestring(instruction)
        + ", "
        + encode_basestring(input)
        + ", "
        + encode_basestring(output)
        + "]"
    )
    return hashlib.sha256(blob.encode("utf-8")).digest()


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
    problems = store.query(
        "SELECT count(*) FROM import_errors WHERE dataset_id = ?", [row["dataset_id"]]
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
        n_problems=int(problems[0][0]),
        already_imported=True,
    )


class _Staging:
    """The import's rows, written to Parquet files beside the store as they are read.

    The store gets them in one transaction at the end, each table in one INSERT ... SELECT over
    its file. Two reasons, both measured at a million pairs: DuckDB holds every row of a
    transaction's many small inserts in memory until the commit (1.1 GB), while one big insert
    from a file is written to disk as it goes (about half); and nothing reaches the store before
    the file has been read to its end, so a refused or failed import has nothing to undo.
    """

    def __init__(self, folder: Path) -> None:
        import pyarrow as pa

        self.folder = folder
        self.samples: dict[str, list[Any]] = {k: [] for k in _SAMPLE_COLUMNS}
        self.errors: dict[str, list[Any]] = {k: [] for k in _ERROR_COLUMNS}
        self.schemas = {
            "samples": pa.schema(
                [("position", pa.int32())] + [(k, pa.string()) for k in _SAMPLE_COLUMNS[1:]]
            ),
            "errors": pa.schema([(k, pa.string()) for k in _ERROR_COLUMNS]),
        }
        self.writers: dict[str, Any] = {}

    def path(self, table: str) -> Path | None:
        """The staged file of `table` (samples or errors), or None if no row was staged."""
        return self.folder / f"{table}.parquet" if table in self.writers else None

    def add_sample(self, position: int, record: SourceRecord, digest: bytes) -> None:
        s = self.samples
        pair = record.pair
        s["position"].append(position)
        s["location"].append(record.location)
        s["instruction"].append(pair.instruction)
        s["input"].append(pair.input)
        s["output"].append(pair.output)
        s["pair_hash"].append(digest.hex())
        if len(s["position"]) >= BATCH_ROWS:
            self.flush("samples", s)

    def add_errors(self, errors: list[RecordError]) -> None:
        e = self.errors
        for error in errors:
            e["location"].append(error.location)
            e["field"].append(error.field)
            e["reason"].append(error.reason)
            e["record"].append(error.raw)
        if len(e["location"]) >= BATCH_ROWS:
            self.flush("errors", e)

    def flush(self, table: str, columns: dict[str, list[Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not next(iter(columns.values())):
            return
        schema = self.schemas[table]
        batch = pa.table({k: pa.array(v, schema.field(k).type) for k, v in columns.items()})
        for column in columns.values():
            column.clear()
        if table not in self.writers:
            # Uncompressed: the file lives for seconds, and the CPU is the scarce part.
            self.writers[table] = pq.ParquetWriter(
                self.folder / f"{table}.parquet", schema, compression="none"
            )
        self.writers[table].write_table(batch)

    def close(self) -> None:
        self.flush("samples", self.samples)
        self.flush("errors", self.errors)
        for writer in self.writers.values():
            writer.close()


_SAMPLE_COLUMNS = ("position", "location", "instruction", "input", "output", "pair_hash")
_ERROR_COLUMNS = ("location", "field", "reason", "record")


def _import(
    store: Store, stream: RecordStream, report: ImportReport, sha256: str, strict: bool
) -> None:
    """Read the whole stream into staging files, then store them in one transaction."""
    with tempfile.TemporaryDirectory(prefix=".srt-import-", dir=store.path.parent) as folder:
        staging = _Staging(Path(folder))
        try:
            copies = _stage(stream, report, staging, strict)
        finally:
            staging.close()
        if strict and report.n_problems:
            report.refused = (
                f"--strict: {report.n_rejected} of {report.n_records} records are bad; "
                "nothing written"
            )
            return
        if not report.n_imported:
            report.refused = f"no valid record among {report.n_records}; nothing written"
            return
        _store(store, report, sha256, staging, copies)


def _stage(
    stream: RecordStream, report: ImportReport, staging: _Staging, strict: bool
) -> dict[int, int]:
    """Stage every distinct good pair and every bad record; returns the copy counts over 1."""
    # digest prefix -> position. Two different pairs sharing 16 bytes of SHA-256 would be folded
    # as copies; at a million pairs the odds are about 1e-27, and the prefix halves the memory.
    seen: dict[bytes, int] = {}
    copies: dict[int, int] = {}  # position -> n_copies, for the pairs seen more than once
    n_good = 0
    for got in stream:
        if isinstance(got, SourceRecord):
            n_good += 1
            pair = got.pair
            digest = fast_pair_digest(pair.instruction, pair.input, pair.output)
            key = digest[:16]
            position = seen.get(key)
            if position is not None:
                copies[position] = copies.get(position, 1) + 1
                continue
            position = seen[key] = len(seen)
            if not (strict and report.n_problems):
                staging.add_sample(position, got, digest)
            continue
        report.n_problems += len(got)
        room = KEEP_ERRORS - len(report.errors)
        if room > 0:
            report.errors.extend(got[:room])
        staging.add_errors(got)
    report.n_records = stream.n_records
    report.n_rejected = stream.n_rejected
    report.n_turns_skipped = stream.turns_skipped
    report.n_imported = len(seen)
    report.n_duplicates = n_good - len(seen)
    return copies


def _store(
    store: Store, report: ImportReport, sha256: str, staging: _Staging, copies: dict[int, int]
) -> None:
    import pyarrow as pa

    with store.transaction():
        row = store.query(
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
        )
        report.dataset_id = dataset_id = int(row[0][0])
        # No ORDER BY: DuckDB keeps a scan's order on insert (preserve_insertion_order), so
        # sample ids follow positions without sorting a million texts.
        store.query(
            "INSERT INTO samples (dataset_id, position, location, instruction, input, output, "
            "pair_hash, n_copies) SELECT ?, position, location, instruction, input, output, "
            "pair_hash, 1 FROM read_parquet(?)",
            [dataset_id, str(staging.path("samples"))],
        )
        errors = staging.path("errors")
        if errors is not None:
            store.query(
                "INSERT INTO import_errors (dataset_id, location, field, reason, record) "
                "SELECT ?, location, field, reason, record FROM read_parquet(?)",
                [dataset_id, str(errors)],
            )
        if copies:
            store.execute_with(
                "UPDATE samples SET n_copies = c.n_copies FROM {copies} c "
                "WHERE samples.dataset_id = ? AND samples.position = c.position",
                [dataset_id],
                copies=pa.table(
                    {
                        "position": pa.array(list(copies), pa.int32()),
                        "n_copies": pa.array(list(copies.values()), pa.int32()),
                    }
                ),
            )


DEMO_NAME = "demo"


def demo_file() -> Path:
    """The small dataset shipped with srt-local, for a first run (`srt demo`, the TUI)."""
    from importlib import resources

    return Path(str(resources.files("srt_local").joinpath("data/demo.jsonl")))


def import_demo(store: Store) -> ImportReport:
    """Import the shipped demo dataset as 'demo' (importing it again changes nothing)."""
    return import_dataset(store, demo_file(), name=DEMO_NAME)
