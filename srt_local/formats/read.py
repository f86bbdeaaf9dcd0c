"""Read a dataset file (.json array, .jsonl, .csv, .parquet) into checked instruction pairs.

Files are streamed, never loaded whole: JSONL and CSV line by line, parquet by row batches, and a
JSON array element by element (json's own decoder run over a sliding window of the text, so an
element is parsed exactly as `json.loads` would parse it and keeps the line it starts on). Memory
is bounded by the largest record, not the file.

A file that cannot be read at all raises DatasetFileError naming the file (and, for JSON syntax,
the line and column); in a stream that may happen part-way, after good records were yielded. A
record that is wrong becomes a RecordError naming its line or index and field; the rest of the
file is still read. Locations: "line N" for JSONL and CSV (the line the record starts on),
"index N (line M)" for JSON arrays, "index N" for parquet rows; indexes are 0-based, lines
1-based. JSONL blank lines are skipped; a UTF-8 byte order mark is tolerated.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from srt_local.errors import SrtError
from srt_local.formats.records import (
    DEFAULT_FIELD_CHARS,
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
CHUNK = 1 << 20  # bytes read at a time from a JSON array
DETECT_LOOKAHEAD = 10_000  # records read, at most, to find the format's keys


class DatasetFileError(SrtError, ValueError):
    """The file cannot be read as a dataset at all."""


class SourceRecord:
    """A good record: where it was and the pair it holds."""

    __slots__ = ("location", "pair")

    def __init__(self, location: str, pair: Pair) -> None:
        self.location = location
        self.pair = pair

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SourceRecord):
            return NotImplemented
        return (self.location, self.pair) == (other.location, other.pair)

    def __repr__(self) -> str:
        return f"SourceRecord({self.location!r}, {self.pair!r})"


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


class _Item:
    """One record as the container gave it: a parsed value, or the reason it could not be parsed."""

    __slots__ = ("escapes", "location", "parse_error", "raw", "value")

    def __init__(
        self,
        location: str,
        value: Any,
        raw: str | None = None,
        parse_error: str | None = None,
        escapes: bool = False,
    ) -> None:
        self.location = location
        self.value = value
        self.raw = raw  # the record's text where the file gives it cheaply
        self.parse_error = parse_error
        # Whether the JSON text holds a \uD800-\uDFFF escape, the only way a lone surrogate
        # gets into a decoded value (CSV and Parquet text is valid UTF-8 already).
        self.escapes = escapes

    def raw_text(self) -> str:
        """The record's text as the store keeps it for a bad record (clipped, always storable)."""
        raw = self.raw
        if raw is None:
            raw = json.dumps(self.value, ensure_ascii=False, default=str)
        raw = raw if len(raw) <= RAW_LIMIT else raw[: RAW_LIMIT - 3] + "..."
        # A lone surrogate cannot be stored as text: keep it as its escape.
        return raw.encode("utf-8", "backslashreplace").decode("utf-8")


class RecordStream:
    """The records of one file, read as they are iterated.

    Iterating yields, in file order, a SourceRecord for each good record and a list of
    RecordErrors for each bad one, and keeps the counts. `format` is known before the first
    record is yielded. DatasetFileError may be raised part-way through.
    """

    def __init__(self, path: Path, fmt: str = "auto", max_chars: int = DEFAULT_FIELD_CHARS) -> None:
        if fmt != "auto" and fmt not in FORMATS:
            raise ValueError(
                f"unknown format {fmt!r}: expected auto or one of {', '.join(FORMATS)}"
            )
        self.file = name = str(path)
        suffix = path.suffix.lower()
        if suffix not in EXTENSIONS:
            raise DatasetFileError(
                f"{name}: unknown file type {path.suffix or '(none)'!r}: "
                f"expected one of {', '.join(EXTENSIONS)}"
            )
        self.max_chars = max_chars
        self.n_records = 0
        self.n_rejected = 0
        self.turns_skipped = 0
        self._items = _items(path, name, suffix, fmt)
        self._buffered: list[_Item] = []
        if fmt == "auto":
            # The first record whose keys name a format decides it; records before it are kept.
            for item in self._items:
                self._buffered.append(item)
                found = detect_format(item.value) if item.parse_error is None else None
                if found is not None:
                    fmt = found
                    break
                if len(self._buffered) >= DETECT_LOOKAHEAD:
                    raise _undetectable(name, self._buffered, DETECT_LOOKAHEAD)
            else:
                if not self._buffered:
                    raise DatasetFileError(f"{name}: no records")
                raise _undetectable(name, self._buffered, None)
        self.format = fmt

    def __iter__(self) -> Iterator[SourceRecord | list[RecordError]]:
        name, fmt, max_chars = self.file, self.format, self.max_chars
        items = itertools.chain(self._buffered, self._items)
        self._buffered = []
        for item in items:
            self.n_records += 1
            if item.parse_error is not None:
                self.n_rejected += 1
                yield [RecordError(name, item.location, None, item.parse_error, item.raw_text())]
                continue
            try:
                pair, skipped = to_pair(item.value, fmt, max_chars, item.escapes)
            except RecordProblems as exc:
                raw = item.raw_text()
                self.n_rejected += 1
                yield [
                    RecordError(name, item.location, p.field, p.reason, raw) for p in exc.problems
                ]
                continue
            self.turns_skipped += skipped
            yield SourceRecord(item.location, pair)
        if not self.n_records:
            raise DatasetFileError(f"{name}: no records")


def read_records(path: Path, fmt: str = "auto", max_chars: int = DEFAULT_FIELD_CHARS) -> ReadResult:
    """Read every record of `path`; `fmt` is alpaca, sharegpt, messages, or auto (from the keys).

    The whole result is held in memory: for files of any size, iterate a RecordStream instead.
    """
    stream = RecordStream(path, fmt, max_chars)
    result = ReadResult(file=stream.file, format=stream.format)
    for got in stream:
        if isinstance(got, SourceRecord):
            result.records.append(got)
        else:
            result.errors.extend(got)
    result.n_records = stream.n_records
    result.turns_skipped = stream.turns_skipped
    return result


def _items(path: Path, name: str, suffix: str, fmt: str) -> Iterator[_Item]:
    if suffix == ".parquet":
        return _parquet_items(path)
    if suffix == ".csv" and fmt not in ("auto", "alpaca"):
        raise DatasetFileError(f"{name}: a CSV file holds alpaca columns only, not {fmt}")
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise DatasetFileError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if suffix == ".jsonl":
        return _jsonl_items(fh)
    if suffix == ".json":
        return _json_items(name, fh)
    return _csv_items(name, fh)


def _undetectable(name: str, items: list[_Item], lookahead: int | None) -> DatasetFileError:
    first_object = next((i.value for i in items if isinstance(i.value, dict)), None)
    among = f"among the first {lookahead:,} records " if lookahead else ""
    if first_object is None:
        bad = next((i for i in items if i.parse_error is not None), items[0])
        reason = bad.parse_error or f"expected a JSON object, got {describe(bad.value)}"
        return DatasetFileError(
            f"{name}: no readable record {among}(first: {bad.location}: {reason})"
        )
    keys = ", ".join(repr(k) for k in list(first_object)[:10]) or "none"
    return DatasetFileError(
        f"{name}: cannot tell the format: no record {among}has the keys of alpaca (instruction, "
        "input, output), sharegpt (conversations) or messages (messages); the first has "
        f"{keys}. Rename the fields, or pass --format."
    )


def _utf8_error(name: str, fh: IO[bytes]) -> DatasetFileError:
    """The line and offset of the first invalid UTF-8 byte of a file (read again from the start)."""
    fh.seek(0)
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = lines = 0
    while True:
        block = fh.read(CHUNK)
        try:
            decoder.decode(block, final=not block)
        except UnicodeDecodeError as exc:
            # The decoder may hold back up to 3 bytes of an unfinished character.
            start = max(0, exc.start - len(exc.object) + len(block))
            at = offset + start
            lines += block.count(b"\n", 0, start)
            byte = block[start] if start < len(block) else 0
            return DatasetFileError(
                f"{name}: line {lines + 1}: not valid UTF-8 (byte 0x{byte:02x} at offset {at}); "
                "save the file as UTF-8"
            )
        if not block:
            return DatasetFileError(f"{name}: not valid UTF-8; save the file as UTF-8")
        lines += block.count(b"\n")
        offset += len(block)


def _jsonl_items(fh: IO[bytes]) -> Iterator[_Item]:
    # Line by line, so one badly encoded or broken line costs one record, not the file.
    with fh:
        for number, line in enumerate(fh, start=1):
            if number == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            if line.endswith(b"\n"):
                line = line[:-1]
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
            if not text or text.isspace():
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                # json's messages end "... at" when it names a place: the column says where.
                why = exc.msg.removesuffix(" at")
                yield _Item(location, None, text, f"invalid JSON at column {exc.colno}: {why}")
                continue
            except RecursionError:
                yield _Item(location, None, text, _TOO_DEEP)
                continue
            yield _Item(location, value, text, escapes=_ESCAPE.search(text) is not None)


# A JSON escape of a UTF-16 surrogate (a false alarm on an escaped backslash costs only a search).
_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_WS = re.compile(r"[ \t\n\r]*")
_TOO_DEEP = "nested too deeply to read (hundreds of levels of arrays or objects)"
# A JSON string, or one bracket: enough to find where a too-deep value ends without recursion.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


class _Window:
    """A sliding window of a UTF-8 file's text: read on demand, dropped once parsed.

    Positions are indexes into `text`; `line_at` and `column_at` give file lines and columns.
    """

    def __init__(self, name: str, fh: IO[bytes]) -> None:
        self.name = name
        self.fh = fh
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.text = ""
        self.eof = False
        self.line = 1  # the file line of text[0]
        self.column = 0  # the 0-based column of text[0] in that line
        # A known (index, line) pair: lines are counted on from it, never from the window's start
        # (that would rescan the window for every element).
        self.mark = 0
        self.mark_line = 1

    def more(self, at_least: int = CHUNK) -> bool:
        """Append at least `at_least` more bytes' worth of text; False at the end of the file."""
        if self.eof:
            return False
        block = self.fh.read(max(at_least, CHUNK))
        try:
            self.text += self.decoder.decode(block, final=not block)
        except UnicodeDecodeError:
            raise _utf8_error(self.name, self.fh) from None
        if not block:
            self.eof = True
        return bool(block)

    def drop(self, pos: int) -> int:
        """Forget the text before `pos` (already parsed); returns the new index of `pos`."""
        if pos < CHUNK:
            return pos
        line = self.line_at(pos)
        nl = self.text.rfind("\n", 0, pos)
        self.column = pos - nl - 1 if nl >= 0 else self.column + pos
        self.line = self.mark_line = line
        self.mark = 0
        self.text = self.text[pos:]
        return 0

    def line_at(self, pos: int) -> int:
        if pos < self.mark:
            self.mark, self.mark_line = 0, self.line
        self.mark_line += self.text.count("\n", self.mark, pos)
        self.mark = pos
        return self.mark_line

    def column_at(self, pos: int) -> int:
        """1-based."""
        nl = self.text.rfind("\n", 0, pos)
        return pos - nl if nl >= 0 else self.column + pos + 1

    def skip_ws(self, pos: int) -> int:
        """The index of the next non-blank character (reading on), or len(text) at the end."""
        while True:
            pos = _WS.match(self.text, pos).end()  # type: ignore[union-attr]
            if pos < len(self.text) or not self.more():
                return pos

    def error(self, pos: int, message: str) -> DatasetFileError:
        where = f"{self.name}: line {self.line_at(pos)} column {self.column_at(pos)}"
        # A string left open runs to the end of the file: the file ends inside it.
        ends_early = not self.text[pos:].strip() or message.startswith("Unterminated string")
        if ends_early and self.eof:
            return DatasetFileError(f"{where}: the JSON ends early (a truncated file?)")
        return DatasetFileError(f"{where}: invalid JSON: {message}")

    def value(self, decoder: json.JSONDecoder, pos: int) -> tuple[Any, int, bool]:
        """The JSON value at `pos`, the index after it, and False if it is nested too deeply.

        Reads on until the value is complete; a value cut by the window's end is read again
        with more text (a number at the very end may go on).
        """
        while True:
            try:
                value, end = decoder.raw_decode(self.text, pos)
            except json.JSONDecodeError as exc:
                if self.more(len(self.text) - pos):
                    continue
                raise self.error(exc.pos, exc.msg) from None
            except RecursionError:
                skipped = _skip_value(self.text, pos)
                if skipped is None:
                    if self.more(len(self.text) - pos):
                        continue
                    raise self.error(len(self.text), "unterminated value") from None
                return None, skipped, False
            if end == len(self.text) and self.more(len(self.text) - pos):
                continue
            return value, end, True


def _skip_value(text: str, pos: int) -> int | None:
    """The end of the array or object at `pos`, found without recursion; None if cut off."""
    depth = 0
    for match in _TOKEN.finditer(text, pos):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
        elif token in ("]", "}"):
            depth -= 1
            if depth == 0:
                return match.end()
    return None


def _json_items(name: str, fh: IO[bytes]) -> Iterator[_Item]:
    """The elements of a top-level array, each with its index and the line it starts on."""
    with fh:
        window = _Window(name, fh)
        decoder = json.JSONDecoder()
        pos = window.skip_ws(0)
        if pos == len(window.text):
            raise DatasetFileError(f"{name}: empty file")
        if window.text[pos] != "[":
            raise _not_an_array(window, decoder, pos)
        pos = window.skip_ws(pos + 1)
        index = 0
        if window.text.startswith("]", pos):
            pos += 1
        else:
            while True:
                pos = window.drop(pos)
                line = window.line_at(pos)
                value, end, ok = window.value(decoder, pos)
                text = window.text
                # A bounded slice: the text is only kept for an error message.
                clip = text[pos : min(end, pos + RAW_LIMIT + 1)]
                location = f"index {index} (line {line})"
                if ok:
                    escapes = _ESCAPE.search(text, pos, end) is not None
                    yield _Item(location, value, clip, escapes=escapes)
                else:
                    yield _Item(location, None, clip, _TOO_DEEP)
                index += 1
                pos = window.skip_ws(end)
                if window.text.startswith(",", pos):
                    pos = window.skip_ws(pos + 1)
                    continue
                if window.text.startswith("]", pos):
                    pos += 1
                    break
                raise window.error(pos, "Expecting ',' delimiter")
        pos = window.skip_ws(pos)
        if pos != len(window.text):
            raise window.error(pos, "Extra data")


def _not_an_array(window: _Window, decoder: json.JSONDecoder, pos: int) -> DatasetFileError:
    """Why a JSON file that does not hold an array cannot be read (its first value is read)."""
    name = window.name
    first = window.text[pos]
    value, end, _ = window.value(decoder, pos)
    after = window.skip_ws(end)
    if after != len(window.text):
        if first == "{":
            return DatasetFileError(
                f"{name}: line {window.line_at(after)}: a second JSON value after the first: this "
                "looks like JSON Lines (one record per line); name the file .jsonl"
            )
        return window.error(after, "Extra data")
    hint = ""
    if isinstance(value, dict):
        lists = [k for k, v in value.items() if isinstance(v, list)]
        hint = f" (its key {lists[0]!r} holds a list: save that list alone)" if lists else ""
    return DatasetFileError(
        f"{name}: expected a JSON array of records, got {describe(value)}{hint}"
    )


def _csv_items(name: str, fh: IO[bytes]) -> Iterator[_Item]:
    with fh:
        text = codecs.getreader("utf-8-sig")(fh)
        reader = csv.reader(_lines(name, text, fh))
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            return
        except csv.Error as exc:
            raise DatasetFileError(f"{name}: line 1: invalid CSV header: {exc}") from None
        missing = [c for c in ("instruction", "output") if c not in header]
        if missing:
            raise DatasetFileError(
                f"{name}: line 1: the header has no {' or '.join(repr(m) for m in missing)} "
                f"column (columns: {', '.join(header) or 'none'}; expected instruction, input "
                "(optional), output)"
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


def _lines(name: str, text: Any, fh: IO[bytes]) -> Iterator[str]:
    """The decoded lines of a CSV file, line endings kept (the csv module wants them)."""
    while True:
        try:
            line = text.readline()
        except UnicodeDecodeError:
            raise _utf8_error(name, fh) from None
        if not line:
            return
        yield line


def _parquet_items(path: Path) -> Iterator[_Item]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise DatasetFileError(f"{path}: cannot read as parquet: {exc}") from None
    index = 0
    try:
        for batch in parquet.iter_batches(batch_size=10_000):
            for row in batch.to_pylist():
                yield _Item(f"index {index}", row)
                index += 1
    except (OSError, pa.ArrowException) as exc:
        raise DatasetFileError(f"{path}: index {index}: cannot read as parquet: {exc}") from None
