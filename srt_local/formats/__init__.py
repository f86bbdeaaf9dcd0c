"""Dataset files: reading records (alpaca, sharegpt, messages) and writing selections.

See records.py for the formats and the multi-turn policy, read.py for files and locations.
"""

from srt_local.formats.read import (
    EXTENSIONS,
    DatasetFileError,
    ReadResult,
    RecordStream,
    SourceRecord,
    read_records,
)
from srt_local.formats.records import FORMATS, RecordError
from srt_local.formats.write import (
    EXPORT_FORMATS,
    SCORE_FIELDS,
    ExportRow,
    check_out_path,
    dataset_info_entry,
    read_dataset_info,
    update_dataset_info,
    write_dataset,
)

__all__ = [
    "EXPORT_FORMATS",
    "EXTENSIONS",
    "FORMATS",
    "SCORE_FIELDS",
    "DatasetFileError",
    "ExportRow",
    "ReadResult",
    "RecordError",
    "RecordStream",
    "SourceRecord",
    "check_out_path",
    "dataset_info_entry",
    "read_dataset_info",
    "read_records",
    "update_dataset_info",
    "write_dataset",
]
