"""Query results (an Arrow table) written to a file: CSV, JSON, JSON Lines or Parquet, chosen by
the file's suffix. Used by the SQL tab's export; never overwrites a file unless asked to."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa

from srt_local.errors import SrtError

RESULT_SUFFIXES = (".csv", ".json", ".jsonl", ".parquet")


class ResultFileError(SrtError):
    """The results cannot be written where or how asked."""


def _json_value(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


# A lone surrogate cannot be UTF-8: written as its JSON escape (\ud800), which reads back the same.


def _records(table: pa.Table) -> list[dict[str, Any]]:
    return [{k: _json_value(v) for k, v in row.items()} for row in table.to_pylist()]


def write_result(table: pa.Table, path: Path, *, overwrite: bool = False) -> int:
    """Write `table` to `path` in the format its suffix names; the number of rows written.

    The file is written beside its destination and moved into place, so a failure leaves no half
    file and an existing file is either kept or wholly replaced (only with `overwrite`)."""
    suffix = path.suffix.lower()
    if suffix not in RESULT_SUFFIXES:
        raise ResultFileError(
            f"{path}: unknown format {suffix or '(no suffix)'}; use one of "
            + ", ".join(RESULT_SUFFIXES)
        )
    if path.is_dir():
        raise ResultFileError(f"{path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise ResultFileError(f"{path} exists; choose another name or allow overwriting it")
    if not path.parent.is_dir():
        raise ResultFileError(f"{path.parent}: no such folder")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            if suffix == ".csv":
                import pyarrow.csv as pa_csv

                # Nested values have no CSV form: they are written as their text.
                flat = pa.table(
                    [
                        pa.array(
                            [None if v is None else str(v) for v in c.to_pylist()], pa.string()
                        )
                        if pa.types.is_nested(c.type)
                        else c
                        for c in table.columns
                    ],
                    names=table.column_names,
                )
                pa_csv.write_csv(flat, out)
            elif suffix == ".json":
                text = json.dumps(_records(table), ensure_ascii=False, indent=1)
                out.write(text.encode(errors="backslashreplace"))
            elif suffix == ".jsonl":
                for record in _records(table):
                    line = json.dumps(record, ensure_ascii=False) + "\n"
                    out.write(line.encode(errors="backslashreplace"))
            else:
                import pyarrow.parquet as pq

                pq.write_table(table, out)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ResultFileError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return table.num_rows
