"""Reading dataset files: the malformed corpus, containers, formats, multi-turn policy; writing."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from srt_local.formats import (
    DatasetFileError,
    ExportRow,
    RecordError,
    check_out_path,
    dataset_info_entry,
    read_records,
    update_dataset_info,
    write_dataset,
)
from srt_local.pairs import Pair

CORPUS = Path(__file__).parent / "data" / "malformed"

# file -> (format, good locations, [(location, field, reason)], turns skipped)
RECORD_LEVEL = {
    "wrong_types.json": (
        "alpaca",
        ["index 0 (line 2)", "index 4 (line 6)"],
        [
            ("index 1 (line 3)", "output", "expected a string, got 12"),
            ("index 2 (line 4)", "instruction", "expected a string, got a list of 3"),
            ("index 2 (line 4)", "input", "expected a string, got 3"),
            ("index 3 (line 5)", None, 'expected a JSON object, got "just a string"'),
        ],
        0,
    ),
    "missing_fields.jsonl": (
        "alpaca",
        ["line 1", "line 5"],
        [
            ("line 2", "output", "missing"),
            ("line 3", "instruction", "missing"),
            ("line 4", None, "expected a JSON object, got a list of 3"),
        ],
        0,
    ),
    "empty_output.jsonl": (
        "alpaca",
        ["line 4"],
        [
            ("line 1", "output", "empty"),
            ("line 2", "instruction", "only whitespace"),
            ("line 3", "output", "only whitespace"),
        ],
        0,
    ),
    "bom_blank_lines.jsonl": (
        "alpaca",
        ["line 1", "line 4"],
        [("line 6", None, "invalid JSON at column 52: Expecting ',' delimiter")],
        0,
    ),
    "csv_bad_rows.csv": (
        "alpaca",
        ["line 2", "line 4"],
        [
            ("line 3", "output", "empty"),
            ("line 8", None, "the row has 2 cells, the header has 3"),
            ("line 9", None, "the row has 4 cells, the header has 3"),
        ],
        0,
    ),
    "sharegpt_roles.json": (
        "sharegpt",
        ["index 0 (line 2)", "index 4 (line 15)"],
        [
            (
                "index 1 (line 6)",
                "conversations[0].from",
                "the conversation must open with 'human' (after any system prompt), got 'gpt'",
            ),
            (
                "index 2 (line 10)",
                "conversations[1].from",
                "unknown role \"bot\" (allowed: 'human', 'gpt', 'system')",
            ),
            (
                "index 3 (line 13)",
                "conversations[1].from",
                "expected the 'gpt' reply to the first 'human' turn, got nothing",
            ),
            ("index 5 (line 21)", "conversations", 'expected a list, got "Name a tree."'),
        ],
        # index 0: its system turn; index 4: top-level system + two later turns
        4,
    ),
    "messages_multiturn.jsonl": (
        "messages",
        ["line 1", "line 4"],  # line 4: content as a list of text parts
        [
            (
                "line 2",
                "messages[1].role",
                "expected the 'assistant' reply to the first 'user' turn, got 'user'",
            ),
            ("line 3", "messages[1].content", "empty"),
            ("line 5", "messages", "only system turns: no 'user' turn"),
            ("line 6", "messages[1].content", "missing"),
        ],
        3,  # line 1: the system prompt and the second exchange
    ),
}

FILE_LEVEL = {
    "truncated.json": "truncated.json: line 3 column 64: the JSON ends early (a truncated file?)",
    "not_array.json": "expected a JSON array of records, got an object (its key 'data' holds",
    "jsonl_named_json.json": "line 2: a second JSON value after the first: this looks like JSON",
    "csv_missing_column.csv": "line 1: the header has no 'output' column (columns: instruction, "
    "input, response;",
}


@pytest.mark.parametrize("name", sorted(RECORD_LEVEL))
def test_corpus_record_errors(name: str) -> None:
    fmt, good, bad, skipped = RECORD_LEVEL[name]
    result = read_records(CORPUS / name)
    assert result.format == fmt
    assert [r.location for r in result.records] == good
    assert [(e.location, e.field, e.reason) for e in result.errors] == bad
    assert all(e.file == str(CORPUS / name) and e.raw for e in result.errors)
    assert result.turns_skipped == skipped
    assert result.n_records == len(good) + len({loc for loc, _, _ in bad})


@pytest.mark.parametrize("name", sorted(FILE_LEVEL))
def test_corpus_file_errors(name: str) -> None:
    with pytest.raises(DatasetFileError) as info:
        read_records(CORPUS / name)
    assert str(info.value).startswith(str(CORPUS / name) + ": ")
    assert FILE_LEVEL[name] in str(info.value)


def test_the_corpus_is_all_tested() -> None:
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(RECORD_LEVEL.keys() | FILE_LEVEL)


def test_record_error_message() -> None:
    error = RecordError("data.jsonl", "line 3", "output", "expected a string, got 12")
    assert str(error) == "data.jsonl: line 3: field 'output': expected a string, got 12"
    assert str(RecordError("d.json", "index 2", None, "bad")) == "d.json: index 2: bad"


def test_texts_are_kept_exactly(tmp_path: Path) -> None:
    record = {"instruction": "  Sum:\n", "input": None, "output": "x\ty ", "id": 7}
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(record) + "\n")
    assert read_records(path).records[0].pair == Pair("  Sum:\n", "", "x\ty ")


def test_conversation_pairs_and_turn_counts(tmp_path: Path) -> None:
    first = {"instruction": "Name a colour.", "output": "Blue."}
    path = tmp_path / "conv.jsonl"
    lines = [
        {"conversations": [{"from": "human", "value": "Q1"}, {"from": "gpt", "value": "A1"}]},
        {"messages": [{"role": "user", "content": "Q2"}, {"role": "assistant", "content": "A2"}]},
    ]
    path.write_text("\n".join(json.dumps(x) for x in [lines[0], lines[1], first]) + "\n")
    result = read_records(path)
    assert result.format == "sharegpt"
    assert [r.pair for r in result.records] == [Pair("Q1", "", "A1")]
    assert [(e.location, e.reason) for e in result.errors] == [
        ("line 2", "a messages record, but the file is read as sharegpt"),
        ("line 3", "an alpaca record, but the file is read as sharegpt"),
    ]
    forced = read_records(path, "messages")
    assert [r.pair for r in forced.records] == [Pair("Q2", "", "A2")]


def test_bad_utf8_costs_one_jsonl_line(tmp_path: Path) -> None:
    path = tmp_path / "enc.jsonl"
    good = json.dumps({"instruction": "Q", "output": "A"}).encode()
    path.write_bytes(good + b"\n" + b'{"instruction": "caf\xe9", "output": "A"}\n' + good + b"\n")
    result = read_records(path)
    assert [r.location for r in result.records] == ["line 1", "line 3"]
    assert [(e.location, e.reason) for e in result.errors] == [
        ("line 2", "not valid UTF-8 (byte 0xe9 at column 21)")
    ]


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_bad_utf8_refuses_a_json_or_csv_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"enc{suffix}"
    body = (
        b'[\n{"instruction": "Q", "output": "\xff"}\n]'
        if suffix == ".json"
        else (b"instruction,output\nQ,A\nQ2,\xc3\n")
    )
    path.write_bytes(body)
    with pytest.raises(DatasetFileError) as info:
        read_records(path)
    line = 2 if suffix == ".json" else 3
    assert str(info.value).startswith(f"{path}: line {line}: not valid UTF-8")


def test_json_array_lines_follow_the_text(tmp_path: Path) -> None:
    records = [{"instruction": f"Q{i}", "output": "A\n" * i + "end"} for i in range(40)]
    path = tmp_path / "pretty.json"
    text = "\ufeff" + json.dumps(records, indent=2)
    path.write_text(text, encoding="utf-8")
    starts = [n for n, line in enumerate(text.splitlines(), start=1) if line == "  {"]
    result = read_records(path)
    assert [r.location for r in result.records] == [
        f"index {i} (line {n})" for i, n in enumerate(starts)
    ]
    compact = tmp_path / "compact.json"
    compact.write_text(json.dumps(records))
    assert {r.location.split(" (")[1] for r in read_records(compact).records} == {"line 1)"}


@pytest.mark.parametrize(
    ("name", "body", "message"),
    [
        ("d.txt", "x", "unknown file type '.txt': expected one of .json, .jsonl, .csv, .parquet"),
        ("d.json", "  \n", "empty file"),
        ("d.json", "[]", "no records"),
        ("d.jsonl", "\n\n", "no records"),
        ("d.csv", "", "no records"),
        ("d.json", '[{"prompt": "Q", "completion": "A"}]', "cannot tell the format"),
        ("d.jsonl", "{bad\n[1]\n", "no readable record (first: line 1: invalid JSON"),
        (
            "d.json",
            '[{"instruction": "Q", "output": "A"}] x',
            "line 1 column 39: invalid JSON: Extra",
        ),
        ("d.json", '[{"instruction": "Q", "output": "A"} {}]', "invalid JSON: Expecting ','"),
        ("d.json", "42", "expected a JSON array of records, got 42"),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, body: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(body)
    with pytest.raises(DatasetFileError) as info:
        read_records(path)
    assert message in str(info.value)


def test_csv_is_alpaca_only(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("output,instruction\nA,Q\n")
    assert read_records(path).records[0].pair == Pair("Q", "", "A")
    with pytest.raises(DatasetFileError, match="a CSV file holds alpaca columns only"):
        read_records(path, "sharegpt")


def test_parquet_with_a_wrong_column_type(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    table = pa.table({"instruction": ["Q0", "Q1", None], "output": pa.array([1, 2, 3], pa.int64())})
    pq.write_table(table, path)
    result = read_records(path)
    assert result.records == []
    assert [(e.location, e.field, e.reason) for e in result.errors] == [
        ("index 0", "output", "expected a string, got 1"),
        ("index 1", "output", "expected a string, got 2"),
        ("index 2", "instruction", "expected a string, got null"),
        ("index 2", "output", "expected a string, got 3"),
    ]


def test_parquet_conversations_and_garbage(tmp_path: Path) -> None:
    path = tmp_path / "c.parquet"
    turns = [[{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]]
    pq.write_table(pa.table({"messages": turns}), path)
    result = read_records(path)
    assert (result.format, [r.pair for r in result.records]) == ("messages", [Pair("Q", "", "A")])
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    with pytest.raises(DatasetFileError, match="cannot read as parquet"):
        read_records(bad)


ROWS = [
    ExportRow(Pair("Name a colour.", "", "Blue."), 0.5, 0.25),
    ExportRow(Pair("Translate.", "Où est la gare ?", "Where is the station?"), None, 0.75),
    ExportRow(Pair("Write a list.", "", "- one\n- two\n"), 0.9, None),
]


@pytest.mark.parametrize("fmt", ["alpaca", "sharegpt", "messages", "parquet"])
@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_write_then_read_gives_the_pairs(tmp_path: Path, fmt: str, suffix: str) -> None:
    out = tmp_path / ("out.parquet" if fmt == "parquet" else f"out{suffix}")
    write_dataset(out, ROWS, fmt, with_scores=True)
    result = read_records(out)
    assert result.errors == []
    assert result.format == ("alpaca" if fmt == "parquet" else fmt)
    expected = [r.pair for r in ROWS]
    if fmt in ("sharegpt", "messages"):
        # no input field: it follows the instruction after a blank line
        expected[1] = Pair("Translate.\nOù est la gare ?", "", "Where is the station?")
    assert [r.pair for r in result.records] == expected
    assert [p.name for p in tmp_path.iterdir()] == [out.name]
    if fmt == "parquet":
        scores = pq.read_table(out).select(["ifd_ppl", "rifd_ppl"]).to_pylist()
    elif suffix == ".json":
        scores = [{k: r[k] for k in ("ifd_ppl", "rifd_ppl")} for r in json.loads(out.read_text())]
    else:
        lines = out.read_text().splitlines()
        scores = [{k: json.loads(x)[k] for k in ("ifd_ppl", "rifd_ppl")} for x in lines]
    assert scores == [{"ifd_ppl": r.ifd_ppl, "rifd_ppl": r.rifd_ppl} for r in ROWS]


def test_records_without_scores_have_no_score_fields(tmp_path: Path) -> None:
    out = tmp_path / "a.json"
    write_dataset(out, ROWS, "alpaca", with_scores=False)
    assert json.loads(out.read_text())[0] == {
        "instruction": "Name a colour.",
        "input": "",
        "output": "Blue.",
    }


@pytest.mark.parametrize(
    ("name", "fmt"), [("a.parquet", "alpaca"), ("a.json", "parquet"), ("a.txt", "messages")]
)
def test_out_path_must_fit_the_format(tmp_path: Path, name: str, fmt: str) -> None:
    with pytest.raises(DatasetFileError):
        check_out_path(tmp_path / name, fmt)


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    out = tmp_path / "a.json"
    out.write_text("old")
    bad = [ExportRow(Pair("Q", "", "A"), ifd_ppl=object())]  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        write_dataset(out, bad, "alpaca", with_scores=True)
    with pytest.raises(pa.ArrowException):
        write_dataset(tmp_path / "a.parquet", bad, "parquet", with_scores=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    assert out.read_text() == "old"


def test_dataset_info_is_merged(tmp_path: Path) -> None:
    other = {"file_name": "theirs.json", "columns": {"prompt": "q"}}
    (tmp_path / "dataset_info.json").write_text(json.dumps({"theirs": other}))
    path, replaced = update_dataset_info(
        tmp_path, "kept", dataset_info_entry("kept.json", "alpaca")
    )
    assert not replaced
    path, replaced = update_dataset_info(
        tmp_path, "kept", dataset_info_entry("kept.jsonl", "messages")
    )
    assert replaced
    assert json.loads(path.read_text()) == {
        "theirs": other,
        "kept": {
            "file_name": "kept.jsonl",
            "formatting": "sharegpt",
            "columns": {"messages": "messages"},
            "tags": {
                "role_tag": "role",
                "content_tag": "content",
                "user_tag": "user",
                "assistant_tag": "assistant",
                "system_tag": "system",
            },
        },
    }


@pytest.mark.parametrize("body", ["{broken", "[1, 2]"])
def test_a_bad_dataset_info_is_left_alone(tmp_path: Path, body: str) -> None:
    info = tmp_path / "dataset_info.json"
    info.write_text(body)
    with pytest.raises(DatasetFileError, match=r"dataset_info\.json"):
        update_dataset_info(tmp_path, "kept", dataset_info_entry("kept.json", "alpaca"))
    assert info.read_text() == body


def test_extra_keys_do_not_change_an_explicit_format(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"instruction": "Q", "output": "A", "messages": "notes"}) + "\n")
    assert read_records(path).errors[0].field == "messages"  # auto: the keys say messages
    assert read_records(path, "alpaca").records[0].pair == Pair("Q", "", "A")
