"""Read a dataset file (.json array, .jsonl, .csv, .parquet) into checked instruction pairs.

A file that cannot be read at all raises DatasetFileError naming the file (and, for JSON syntax,
the line and column). A record that is wrong becomes a RecordError naming its line or index and
field; the rest of the file is still read. Locations: "line N" for JSONL and CSV (the line the
record starts on), "index N (line M)" for JSON arrays, "index N" for parquet rows; indexes are
0-based, lines 1-based. JSONL blank lines are skipped; a UTF-8 byte order mark is tolerated.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srt_local.errors import SrtError
from srt_local.formats.records import (
    FORMATS,
    RAW_LIMIT,
    RecordError,
    RecordProblems,
    describe,
    detect_format,
    to_pair,
)
from srt_local.pairs import Pair

EXTENSIONS = (".json", ".jsonl", ".csv", ".parquet")
CSV_COLUMNS = ("instruction", "input", "output")


class DatasetFileError(SrtError, ValueError):
    """The file cannot be read as a dataset at all."""


@dataclass(frozen=True)
class SourceRecord:
    """A good record: where it was and the pair it holds."""

    location: str
    pair: Pair


@dataclass
class ReadResult:
    """Everything read from one file: the good pairs, the bad records, and what was skipped."""

    file: str
    format: str
    records: list[SourceRecord] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)
    turns_skipped: int = 0
    n_records: int = 0

    @property
    def n_rejected(self) -> int:
        """Records with at least one error (a record can have several)."""
        return len({e.location for e in self.errors})


@dataclass(frozen=True)
class _Item:
    """One record as the container gave it: a parsed value, or the reason it could not be parsed."""

    location: str
    value: Any
    raw: str | None = None  # the record's text where the file gives it cheaply
    parse_error: str | None = None

    def raw_text(self) -> str:
        """The record's text as the store keeps it for a bad record (clipped)."""
        raw = self.raw
        if raw is None:
            raw = json.dumps(self.value, ensure_ascii=False, default=str)
        return raw if len(raw) <= RAW_LIMIT else raw[: RAW_LIMIT - 3] + "..."


def read_records(path: Path, fmt: str = "auto") -> ReadResult:
    """Read every record of `path`; `fmt` is alpaca, sharegpt, messages, or auto (from the keys)."""
    if fmt != "auto" and fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: expected auto or one of {', '.join(FORMATS)}")
    name = str(path)
    suffix = path.suffix.lower()
    if suffix not in EXTENSIONS:
        raise DatasetFileError(
            f"{name}: unknown file type {path.suffix or '(none)'!r}: "
            f"expected one of {', '.join(EXTENSIONS)}"
        )
    items = _items(path, name, suffix, fmt)
    buffered: list[_Item] = []
    if fmt == "auto":
        # The first record whose keys name a format decides it; records before it are kept.
        for item in items:
            buffered.append(item)
            found = detect_format(item.value) if item.parse_error is None else None
            if found is not None:
                fmt = found
                break
        else:
            if not buffered:
                raise DatasetFileError(f"{name}: no records")
            raise _undetectable(name, buffered)
    result = ReadResult(file=name, format=fmt)
    for item in itertools.chain(buffered, items):
        result.n_records += 1
        if item.parse_error is not None:
            result.errors.append(
                RecordError(name, item.location, None, item.parse_error, item.raw_text())
            )
            continue
        try:
            pair, skipped = to_pair(item.value, fmt)
        except RecordProblems as exc:
            raw = item.raw_text()
            result.errors.extend(
                RecordError(name, item.location, p.field, p.reason, raw) for p in exc.problems
            )
            continue
        result.records.append(SourceRecord(item.location, pair))
        result.turns_skipped += skipped
    if not result.n_records:
        raise DatasetFileError(f"{name}: no records")
    return result


def _items(path: Path, name: str, suffix: str, fmt: str) -> Iterator[_Item]:
    if suffix == ".parquet":
        return _parquet_items(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetFileError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if suffix == ".jsonl":
        return _jsonl_items(data)
    if suffix == ".json":
        return _json_items(name, _decode(name, data))
    if fmt not in ("auto", "alpaca"):
        raise DatasetFileError(f"{name}: a CSV file holds alpaca columns only, not {fmt}")
    return _csv_items(name, _decode(name, data))


def _undetectable(name: str, items: list[_Item]) -> DatasetFileError:
    first_object = next((i.value for i in items if isinstance(i.value, dict)), None)
    if first_object is None:
        bad = next((i for i in items if i.parse_error is not None), items[0])
        reason = bad.parse_error or f"expected a JSON object, got {describe(bad.value)}"
        return DatasetFileError(f"{name}: no readable record (first: {bad.location}: {reason})")
    keys = ", ".join(repr(k) for k in list(first_object)[:10]) or "none"
    return DatasetFileError(
        f"{name}: cannot tell the format: no record has the keys of alpaca (instruction, input, "
        f"output), sharegpt (conversations) or messages (messages); the first has {keys}. "
        "Rename the fields, or pass --format."
    )


def _decode(name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DatasetFileError(
            f"{name}: line {line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); save the file as UTF-8"
        ) from None


def _jsonl_items(data: bytes) -> Iterator[_Item]:
    # Line by line, so one badly encoded or broken line costs one record, not the file.
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for number, line in enumerate(data.split(b"\n"), start=1):
        location = f"line {number}"
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raw = line.decode("utf-8", errors="replace")
            yield _Item(
                location,
                None,
                raw,
                f"not valid UTF-8 (byte 0x{line[exc.start]:02x} at column {exc.start + 1})",
            )
            continue
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            yield _Item(location, None, text, f"invalid JSON at column {exc.colno}: {exc.msg}")
            continue
        yield _Item(location, value, text)


_WS = re.compile(r"[ \t\n\r]*")


def _json_items(name: str, text: str) -> Iterator[_Item]:
    """The elements of a top-level array, each with its index and the line it starts on."""
    pos = _WS.match(text).end()  # type: ignore[union-attr]
    if pos == len(text):
        raise DatasetFileError(f"{name}: empty file")
    if text[pos] != "[":
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg == "Extra data" and text[pos] == "{":
                raise DatasetFileError(
                    f"{name}: line {exc.lineno}: a second JSON value after the first: this looks "
                    "like JSON Lines (one record per line); name the file .jsonl"
                ) from None
            raise _json_error(name, exc) from None
        hint = ""
        if isinstance(value, dict):
            lists = [k for k, v in value.items() if isinstance(v, list)]
            hint = f" (its key {lists[0]!r} holds a list: save that list alone)" if lists else ""
        raise DatasetFileError(
            f"{name}: expected a JSON array of records, got {describe(value)}{hint}"
        )
    decoder = json.JSONDecoder()
    index, line, line_pos = 0, 1, 0
    pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
    if text.startswith("]", pos):
        pos += 1
    else:
        while True:
            try:
                value, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                raise _json_error(name, exc) from None
            line += text.count("\n", line_pos, pos)
            line_pos = pos
            # A bounded slice: the text is only kept for an error message.
            clip = text[pos : min(end, pos + RAW_LIMIT + 1)]
            yield _Item(f"index {index} (line {line})", value, clip)
            index += 1
            pos = _WS.match(text, end).end()  # type: ignore[union-attr]
            if text.startswith(",", pos):
                pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
                continue
            if text.startswith("]", pos):
                pos += 1
                break
            raise _syntax_error(name, text)
    rest = _WS.match(text, pos).end()  # type: ignore[union-attr]
    if rest != len(text):
        raise _syntax_error(name, text)


def _json_error(name: str, exc: json.JSONDecodeError) -> DatasetFileError:
    where = f"{name}: line {exc.lineno} column {exc.colno}"
    if not exc.doc[exc.pos :].strip():
        return DatasetFileError(f"{where}: the JSON ends early (a truncated file?)")
    return DatasetFileError(f"{where}: invalid JSON: {exc.msg}")


def _syntax_error(name: str, text: str) -> DatasetFileError:
    """The parser's own message for text the array walk found malformed."""
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return _json_error(name, exc)
    return DatasetFileError(f"{name}: invalid JSON")


def _csv_items(name: str, text: str) -> Iterator[_Item]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return
    except csv.Error as exc:
        raise DatasetFileError(f"{name}: line 1: invalid CSV header: {exc}") from None
    missing = [c for c in ("instruction", "output") if c not in header]
    if missing:
        raise DatasetFileError(
            f"{name}: line 1: the header has no {' or '.join(repr(m) for m in missing)} column "
            f"(columns: {', '.join(header) or 'none'}; expected instruction, input (optional), "
            "output)"
        )
    doubled = sorted({h for h in header if header.count(h) > 1 and h in CSV_COLUMNS})
    if doubled:
        raise DatasetFileError(f"{name}: line 1: column {doubled[0]!r} appears twice")
    last = reader.line_num
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DatasetFileError(f"{name}: line {last + 1}: invalid CSV: {exc}") from None
        location, last = f"line {last + 1}", reader.line_num
        if not row:
            continue
        if len(row) != len(header):
            reason = f"the row has {len(row)} cells, the header has {len(header)}"
            yield _Item(location, None, json.dumps(row, ensure_ascii=False), reason)
            continue
        yield _Item(location, dict(zip(header, row, strict=True)))


def _parquet_items(path: Path) -> Iterator[_Item]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise DatasetFileError(f"{path}: cannot read as parquet: {exc}") from None
    rows = (row for batch in table.to_batches() for row in batch.to_pylist())
    for index, row in enumerate(rows):
        yield _Item(f"index {index}", row)
