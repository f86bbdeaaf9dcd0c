"""Streaming import: large files, hostile records, real LLaMA-Factory shapes, limits, counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import srt_local.formats.read as read_module
from srt_local.cli import cli
from srt_local.config import ConfigError, Limits, load_models
from srt_local.formats import read_records
from srt_local.formats.write import ExportRow, to_record, write_dataset
from srt_local.importer import fast_pair_digest, import_dataset
from srt_local.pairs import Pair, pair_hash
from srt_local.review import datasets_table, import_errors_page
from srt_local.store import Store

CORPUS = Path(__file__).parent / "data" / "malformed"


def srt(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def expected_samples(path: Path, fmt: str = "auto") -> list[tuple[int, str, str, int]]:
    """What the store must hold, from the reader and pairs.pair_hash alone (the definitions):
    (position, location, pair_hash, n_copies) of each distinct pair in order of first appearance.
    """
    found: dict[str, list[object]] = {}
    for record in read_records(path, fmt).records:
        key = record.pair.hash
        if key in found:
            found[key][3] = int(found[key][3]) + 1  # type: ignore[call-overload]
        else:
            found[key] = [len(found), record.location, key, 1]
    return [tuple(v) for v in found.values()]  # type: ignore[misc]


def stored_samples(store: Store, dataset_id: int) -> list[tuple[int, str, str, int]]:
    rows = store.query(
        "SELECT position, location, pair_hash, n_copies FROM samples WHERE dataset_id = ? "
        "ORDER BY sample_id",
        [dataset_id],
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]


def big_records(n: int) -> list[object]:
    """n alpaca records with duplicates, bad records, unicode and escapes."""
    records: list[object] = []
    for i in range(n):
        if i % 997 == 5:
            records.append({"instruction": f"bad {i}", "output": i})
        elif i % 101 == 7:
            records.append(records[i - 7])  # an exact copy of an earlier record
        else:
            records.append(
                {
                    "instruction": f'Q{i} "quoted" \\ back\tslash é 😀\n' * (1 + i % 3),
                    "input": "" if i % 2 else f"ctx {i}\u2028",
                    "output": f"A{i}" + "x" * (i % 50),
                }
            )
    return records


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_a_large_file_imports_as_the_definitions_say(tmp_path: Path, suffix: str) -> None:
    records = big_records(20_000)
    path = tmp_path / f"big{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    else:
        path.write_text(json.dumps(records, ensure_ascii=False, indent=1))
    with Store.open(tmp_path / "s.duckdb") as store:
        report = import_dataset(store, path)
        expected = expected_samples(path)
        assert stored_samples(store, 1) == expected
        # positions are dense, sample ids follow them, every hash is pairs.pair_hash's
        assert [p for p, *_ in expected] == list(range(len(expected)))
        for instruction, input_, output, stored in store.query(
            "SELECT instruction, input, output, pair_hash FROM samples"
        ):
            assert stored == pair_hash(instruction, input_, output)
    bad = sum(1 for r in records if isinstance(r, dict) and not isinstance(r["output"], str))
    assert report.n_records == 20_000
    assert report.n_rejected == bad == report.n_problems
    assert report.n_imported == len(expected)
    assert report.n_duplicates == 20_000 - bad - len(expected) > 0


def test_a_json_array_reads_the_same_through_a_tiny_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every element cut by the window's edge, at every position, parses as a whole file does."""
    records = [*big_records(300), [1, 2], 12345, "str", None, {"deep": [[[[]]]]}]
    path = tmp_path / "w.json"
    path.write_text("\ufeff" + json.dumps(records, ensure_ascii=False, indent=2))
    whole = read_records(path)
    for chunk in (1, 7, 64):
        monkeypatch.setattr(read_module, "CHUNK", chunk)
        small = read_records(path)
        assert small.records == whole.records
        assert small.errors == whole.errors
        assert small.n_records == len(records)


@pytest.mark.parametrize(
    "text",
    [
        "",
        'say "hi"',
        "back\\slash",
        "ctl \x00\x01\x1f\x7f tab\t nl\n cr\r",
        "é ü 😀 \u2028 \u2029 \ufeff",
        "</script> [/INST] :x:",
    ],
)
def test_the_fast_digest_is_the_pair_hash(text: str) -> None:
    for triple in ((text, "", "x"), ("q", text, text), (text, text, text)):
        assert fast_pair_digest(*triple).hex() == pair_hash(*triple)


DEEP = "[" * 100_000 + "]" * 100_000

HOSTILE_JSONL = [
    '{"instruction": "good one", "output": "fine"}',
    '{"instruction": "surrogate", "output": "bad \\ud800 text"}',
    '{"instruction": "nested", "output": ' + DEEP + "}",
    DEEP,
    '{"instruction": 12, "output": "wrong type"}',
    '{"output": "missing instruction"}',
    '{"instruction": "huge", "output": "' + "x" * 5000 + '"}',
    '{"instruction": "good two", "output": "fine"}',
]


def test_hostile_records_are_rejected_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SRT_HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "config").mkdir(parents=True)
    (tmp_path / "home" / "config" / "models.toml").write_text(
        "[limits]\nimport_field_chars = 4000\n"
    )
    path = tmp_path / "hostile.jsonl"
    path.write_text("\n".join(HOSTILE_JSONL) + "\n")
    db = tmp_path / "s.duckdb"
    result = srt("import", path, "--db", db)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    expected = {
        "line 2": ("output", "lone surrogate \\ud800 at character 4"),
        "line 3": (None, "nested too deeply"),
        "line 4": (None, "nested too deeply"),
        "line 5": ("instruction", "expected a string, got 12"),
        "line 6": ("instruction", "missing"),
        "line 7": ("output", "5,000 characters, over the import limit of 4,000"),
    }
    for location, (field, _) in expected.items():
        named = f"field {field!r}: " if field else ""
        assert f"hostile.jsonl: {location}: {named}" in result.stderr
    with Store.open(db, read_only=True) as store:
        assert [r[0] for r in store.query("SELECT instruction FROM samples ORDER BY position")] == [
            "good one",
            "good two",
        ]
        errors = store.query(
            "SELECT location, field, reason, record FROM import_errors ORDER BY rowid"
        )
        assert [(e[0], e[1]) for e in errors] == [(k, v[0]) for k, v in expected.items()]
        for (_, _, reason, record), (_, want) in zip(errors, expected.values(), strict=True):
            assert want in reason
            assert len(record) <= 500
        [row] = store.query("SELECT n_records, n_imported, n_rejected FROM datasets")
        assert row == (8, 2, 6)


def test_hostile_elements_of_a_json_array_are_rejected_alone(tmp_path: Path) -> None:
    path = tmp_path / "hostile.json"
    path.write_text(
        "[\n"
        '{"instruction": "good", "output": "fine"},\n'
        '{"instruction": "s", "output": "\\udfff"},\n' + DEEP + ",\n"
        '{"instruction": "x", "output": "' + "y" * 300 + '"},\n'
        '{"instruction": "good too", "output": "fine"}\n'
        "]\n"
    )
    result = read_records(path, max_chars=200)
    assert [r.location for r in result.records] == ["index 0 (line 2)", "index 4 (line 6)"]
    assert [(e.location, e.field, e.reason[:24]) for e in result.errors] == [
        ("index 1 (line 3)", "output", "a lone surrogate \\udfff "),
        ("index 2 (line 4)", None, "nested too deeply to rea"),
        ("index 3 (line 5)", "output", "300 characters, over the"),
    ]


GLAIVE_LIKE = [
    {  # a plain exchange, then a tool call and its observation: the first pair is kept
        "conversations": [
            {"from": "human", "value": "Hi, what can you do?"},
            {"from": "gpt", "value": "I can convert currencies."},
            {"from": "human", "value": "Convert 100 USD to EUR."},
            {"from": "function_call", "value": '{"name": "convert", "arguments": {"a": 100}}'},
            {"from": "observation", "value": '{"result": 92}'},
            {"from": "gpt", "value": "100 USD is 92 EUR."},
        ],
        "tools": '[{"name": "convert"}]',
    },
    {  # the reply to the first turn is a tool call: no instruction pair
        "conversations": [
            {"from": "human", "value": "Convert 5 GBP to JPY."},
            {"from": "function_call", "value": '{"name": "convert"}'},
            {"from": "observation", "value": '{"result": 950}'},
            {"from": "gpt", "value": "5 GBP is 950 JPY."},
        ],
        "tools": "[]",
    },
    {
        "conversations": [
            {"from": "human", "value": "Tell me a joke."},
            {"from": "gpt", "value": "Why did the chicken cross the road?"},
        ],
        "tools": "[]",
    },
]

V1_SFT_LIKE = [
    {
        "messages": [
            {"role": "user", "content": [{"type": "text", "value": "hi"}], "loss_weight": 0.0},
            {
                "role": "assistant",
                "content": [{"type": "text", "value": "Hello! "}, {"type": "text", "value": "Hi."}],
                "loss_weight": 1.0,
            },
        ]
    },
    {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Name a colour."}]},
            {"role": "assistant", "content": "Blue.", "tool_calls": []},
            {"role": "tool", "content": None},
        ]
    },
    {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in the picture?"},
                    {"type": "image_url", "image_url": {"url": "x.png"}},
                ],
            },
            {"role": "assistant", "content": "A cat."},
        ]
    },
]


def test_tool_roles_after_the_first_pair_are_skipped_turns(tmp_path: Path) -> None:
    path = tmp_path / "glaive_toolcall_like.json"
    text = json.dumps(GLAIVE_LIKE, indent=2)
    path.write_text(text)
    starts = [n for n, line in enumerate(text.splitlines(), start=1) if line == "  {"]
    result = read_records(path)
    assert result.format == "sharegpt"
    assert [r.pair for r in result.records] == [
        Pair("Hi, what can you do?", "", "I can convert currencies."),
        Pair("Tell me a joke.", "", "Why did the chicken cross the road?"),
    ]
    assert result.turns_skipped == 4
    [error] = result.errors
    assert error.location == f"index 1 (line {starts[1]})"
    assert error.field == "conversations[1].from"
    assert "got 'function_call' (a tool turn" in error.reason


def test_message_content_given_as_parts(tmp_path: Path) -> None:
    path = tmp_path / "v1_sft_like.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in V1_SFT_LIKE))
    result = read_records(path)
    assert result.format == "messages"
    assert [r.pair for r in result.records] == [
        Pair("hi", "", "Hello! Hi."),
        Pair("Name a colour.", "", "Blue."),
    ]
    assert result.turns_skipped == 2  # line 2: its system prompt and the tool turn
    [error] = result.errors
    assert (error.location, error.field) == ("line 3", "messages[0].content")
    assert 'only text parts can be scored, got "image_url" part' in error.reason


def test_rejected_records_are_counted_once_everywhere(tmp_path: Path) -> None:
    """A record with two problems is one rejected record in the Datasets table and its pane."""
    path = tmp_path / "two.jsonl"
    path.write_text(
        '{"instruction": 1, "output": 2}\n{"instruction": "ok", "output": "ok"}\n{"output": 3}\n'
    )
    with Store.open(tmp_path / "s.duckdb") as store:
        report = import_dataset(store, path)
        assert (report.n_rejected, report.n_problems) == (2, 4)
        table, total = import_errors_page(store, 1, 10)
        assert total == 2 == datasets_table(store).column("rejected")[0].as_py()
        assert table.to_pylist() == [
            {
                "location": "line 1",
                "field": "instruction, output",
                "reason": "expected a string, got 1; expected a string, got 2",
            },
            {
                "location": "line 3",
                "field": "instruction, output",
                "reason": "missing; expected a string, got 3",
            },
        ]


def test_limits_are_read_from_models_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SRT_HOME", str(tmp_path))
    config = tmp_path / "config" / "models.toml"
    config.parent.mkdir()
    assert load_models().limits == Limits(import_field_chars=200_000, reply_chars=100_000)
    config.write_text("[limits]\nreply_chars = 5000\n")
    assert load_models().limits == Limits(import_field_chars=200_000, reply_chars=5000)
    for body, message in (
        ("[limits]\nfield_chars = 5000\n", "[limits] key 'field_chars': unknown key"),
        ("[limits]\nimport_field_chars = 10\n", "at least 1000 characters"),
        ("[limits]\nimport_field_chars = '9'\n", "expected an integer"),
    ):
        config.write_text(body)
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            load_models()


def test_the_json_export_is_written_row_by_row(tmp_path: Path) -> None:
    rows = [
        ExportRow(Pair(f"Q{i}\n", "" if i % 2 else "in", f"A{i} é"), 0.5, None) for i in range(5)
    ]
    for fmt in ("alpaca", "sharegpt", "messages"):
        out = tmp_path / f"{fmt}.json"
        assert write_dataset(out, iter(rows), fmt, with_scores=True) == 5
        records = [to_record(r, fmt, True) for r in rows]
        assert out.read_text() == json.dumps(records, ensure_ascii=False, indent=2) + "\n"
    empty = tmp_path / "empty.json"
    assert write_dataset(empty, iter([]), "alpaca", with_scores=False) == 0
    assert empty.read_text() == "[]\n"


def test_the_demo_corpus_imports_the_same_as_the_reader_says(tmp_path: Path) -> None:
    """Every malformed-corpus file: the stored samples are what reader and pair_hash define."""
    with Store.open(tmp_path / "s.duckdb") as store:
        for path in sorted(CORPUS.iterdir()):
            try:
                expected = expected_samples(path)
            except ValueError:
                continue  # a file-level error: nothing to compare
            report = import_dataset(store, path, name=path.name)
            if report.refused:
                assert expected == []
                continue
            assert stored_samples(store, int(report.dataset_id or 0)) == expected


def test_a_file_broken_after_good_records_leaves_nothing(tmp_path: Path) -> None:
    """The reader fails part-way (a truncated array): the good records before it are not stored."""
    path = tmp_path / "cut.json"
    good = [{"instruction": f"Q{i}", "output": f"A{i}"} for i in range(5000)]
    path.write_text(json.dumps(good)[:-40])
    db = tmp_path / "s.duckdb"
    result = srt("import", path, "--db", db)
    assert result.exit_code == 2
    assert "the JSON ends early (a truncated file?)" in result.stderr
    with Store.open(db, read_only=True) as store:
        assert store.query("SELECT count(*) FROM datasets") == [(0,)]
        assert store.query("SELECT count(*) FROM samples") == [(0,)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.json", "s.duckdb"]
