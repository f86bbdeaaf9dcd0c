"""Write pairs as a dataset file, and the LLaMA-Factory `dataset_info.json` entry that loads it.

The container follows the file name: `.json` is one JSON array, `.jsonl` one record per line,
`.parquet` a table of the alpaca columns. sharegpt and messages records have no `input` field, so
an input is joined to the instruction with one newline ("instruction\\ninput"), exactly as
LLaMA-Factory joins an alpaca record's prompt and query: every export format trains on the same
prompt. Every file is written to a temporary name and renamed, so a crash never leaves half a file
under the real name. Rows are written as they come (a JSON array too), so memory does not grow with
the selection.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from srt_local.formats.read import DatasetFileError
from srt_local.pairs import Pair

EXPORT_FORMATS = ("alpaca", "sharegpt", "messages", "parquet")
SCORE_FIELDS = ("ifd_ppl", "rifd_ppl")  # the reference code's names for IFD and r-IFD
PARQUET_ROWS = 50_000  # rows per row group of an exported parquet file


@dataclass(frozen=True)
class ExportRow:
    """One pair to write, with its scores (None where the run has none)."""

    pair: Pair
    ifd_ppl: float | None = None
    rifd_ppl: float | None = None


def prompt_text(pair: Pair) -> str:
    """The user turn of a conversation: the instruction, then the input on the next line, the way
    LLaMA-Factory builds an alpaca prompt (so alpaca and conversation exports train alike)."""
    return f"{pair.instruction}\n{pair.input}" if pair.input else pair.instruction


def to_record(row: ExportRow, fmt: str, with_scores: bool) -> dict[str, Any]:
    """The JSON record of one row in `fmt` (alpaca, sharegpt or messages)."""
    pair = row.pair
    record: dict[str, Any]
    if fmt in ("alpaca", "parquet"):
        record = {"instruction": pair.instruction, "input": pair.input, "output": pair.output}
    elif fmt == "sharegpt":
        record = {
            "conversations": [
                {"from": "human", "value": prompt_text(pair)},
                {"from": "gpt", "value": pair.output},
            ]
        }
    elif fmt == "messages":
        record = {
            "messages": [
                {"role": "user", "content": prompt_text(pair)},
                {"role": "assistant", "content": pair.output},
            ]
        }
    else:
        raise ValueError(f"unknown export format {fmt!r}")
    if with_scores:
        record["ifd_ppl"] = row.ifd_ppl
        record["rifd_ppl"] = row.rifd_ppl
    return record


def check_out_path(path: Path, fmt: str) -> None:
    """Refuse an output name whose extension does not fit the format, before any work is done."""
    suffix = path.suffix.lower()
    if fmt == "parquet" and suffix != ".parquet":
        raise DatasetFileError(f"{path}: --format parquet writes a .parquet file")
    if fmt != "parquet" and suffix not in (".json", ".jsonl"):
        raise DatasetFileError(
            f"{path}: --format {fmt} writes .json (one array) or .jsonl (one record per line)"
        )


def write_dataset(path: Path, rows: Iterable[ExportRow], fmt: str, with_scores: bool) -> int:
    """Write `rows` to `path` in `fmt`, atomically, as they are iterated; returns how many."""
    check_out_path(path, fmt)
    written = 0
    if fmt == "parquet":

        def parquet(f: IO[Any]) -> None:
            nonlocal written
            written = _write_parquet(f, rows, with_scores)

        _atomic(path, "wb", parquet)
        return written
    jsonl = path.suffix.lower() == ".jsonl"

    def text(f: IO[Any]) -> None:
        nonlocal written
        for row in rows:
            record = to_record(row, fmt, with_scores)
            if jsonl:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                # The bytes json.dumps(all_records, indent=2) writes, one record at a time
                # (a JSON string holds no raw newline, so indenting every line is safe).
                body = json.dumps(record, ensure_ascii=False, indent=2).replace("\n", "\n  ")
                f.write(("[\n  " if not written else ",\n  ") + body)
            written += 1
        if not jsonl:
            f.write("\n]\n" if written else "[]\n")

    _atomic(path, "w", text)
    return written


def _write_parquet(f: IO[Any], rows: Iterable[ExportRow], with_scores: bool) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    fields = [("instruction", pa.string()), ("input", pa.string()), ("output", pa.string())]
    if with_scores:
        fields += [("ifd_ppl", pa.float64()), ("rifd_ppl", pa.float64())]
    schema = pa.schema(fields)
    written = 0
    with pq.ParquetWriter(f, schema) as writer:
        chunk: list[ExportRow] = []
        for row in itertools.chain(rows, [None]):
            if row is not None:
                chunk.append(row)
            if len(chunk) >= PARQUET_ROWS or (row is None and (chunk or not written)):
                columns: dict[str, pa.Array] = {
                    "instruction": pa.array([r.pair.instruction for r in chunk], pa.string()),
                    "input": pa.array([r.pair.input for r in chunk], pa.string()),
                    "output": pa.array([r.pair.output for r in chunk], pa.string()),
                }
                if with_scores:
                    columns["ifd_ppl"] = pa.array([r.ifd_ppl for r in chunk], pa.float64())
                    columns["rifd_ppl"] = pa.array([r.rifd_ppl for r in chunk], pa.float64())
                writer.write_table(pa.table(columns, schema=schema))
                written += len(chunk)
                chunk = []
    return written


def dataset_info_entry(file_name: str, fmt: str) -> dict[str, Any]:
    """A LLaMA-Factory dataset_info.json entry that loads `file_name` written in `fmt`."""
    entry: dict[str, Any] = {"file_name": file_name}
    if fmt in ("alpaca", "parquet"):
        entry["formatting"] = "alpaca"
        entry["columns"] = {"prompt": "instruction", "query": "input", "response": "output"}
    elif fmt == "sharegpt":
        entry["formatting"] = "sharegpt"
        entry["columns"] = {"messages": "conversations"}
        entry["tags"] = {
            "role_tag": "from",
            "content_tag": "value",
            "user_tag": "human",
            "assistant_tag": "gpt",
            "system_tag": "system",
        }
    elif fmt == "messages":
        entry["formatting"] = "sharegpt"
        entry["columns"] = {"messages": "messages"}
        entry["tags"] = {
            "role_tag": "role",
            "content_tag": "content",
            "user_tag": "user",
            "assistant_tag": "assistant",
            "system_tag": "system",
        }
    else:
        raise ValueError(f"unknown export format {fmt!r}")
    return entry


def read_dataset_info(directory: Path) -> tuple[Path, dict[str, Any]]:
    """`directory`/dataset_info.json and its entries ({} when there is none yet). A file that is
    not a JSON object is refused: it is never overwritten."""
    path = directory / "dataset_info.json"
    if not path.exists():
        return path, {}
    try:
        loaded = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetFileError(
            f"{path}: not valid JSON ({exc}); fix or move it, then export again"
        ) from None
    if not isinstance(loaded, dict):
        raise DatasetFileError(f"{path}: expected a JSON object of datasets; left unchanged")
    return path, loaded


def update_dataset_info(directory: Path, name: str, entry: dict[str, Any]) -> tuple[Path, bool]:
    """Set `name` in `directory`/dataset_info.json, keeping every other entry.

    Returns the file's path and whether an entry of that name was replaced. A file that is not a
    JSON object is left alone and reported, never overwritten. The new file replaces the old one
    in one rename, so a reader never sees half of it.
    """
    path, info = read_dataset_info(directory)
    replaced = name in info
    info[name] = entry
    text = json.dumps(info, ensure_ascii=False, indent=2) + "\n"
    _atomic(path, "w", lambda f: f.write(text))
    return path, replaced


def _atomic(path: Path, mode: str, write: Callable[[IO[Any]], object]) -> None:
    """Write through a temporary file in `path`'s directory, renamed over `path` once synced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates the file private (0600); give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
