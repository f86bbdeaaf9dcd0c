"""`srt export` from a real store: every format round-trips through `srt import`, top-k, entries.

The run, its versions and decisions are written through the run repository, as the pipeline
writes them, with chosen scores and overrides.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from srt_local.cli import cli
from srt_local.decision import Decision
from srt_local.exporter import ExportError, export_run, select_rows
from srt_local.formats import read_records
from srt_local.importer import import_dataset
from srt_local.pairs import Pair
from srt_local.review import set_override
from srt_local.run.repository import RunRepository, RunSettings
from srt_local.run.vocabulary import Kind, RunStatus
from srt_local.store import Store

TEACHER_KEY = "tk-test"

# (instruction, input, output) of the originals
ORIGINALS = [
    ("Name a colour.", "", "Blue."),
    ("Translate.", "Où est la gare ?", "Where is it?"),
    ("Add 5 and 7.", "", "12"),
    ("Name a shape.", "", "Circle."),
    ("Write a haiku.", "", "Rain."),
    ("Explain tides.", "", "The Moon."),
]
# per position: (branch, final_kind, ifd, rifd, emitted, override)
DECISIONS = [
    ("QA", "QA", 0.80, 0.50, True, None),
    ("A", "A", 0.60, 0.40, True, None),
    ("QA", "QA", 0.95, 0.70, True, "reject"),  # a person rejected it
    ("ori", "ori", 1.20, 0.90, False, "accept"),  # a person accepted it anyway
    ("A", "A", 0.60, 0.30, True, None),  # ties position 1 on IFD
    ("Q", "Q", 0.90, 1.10, False, None),  # fails r-IFD, not emitted
]


def reflected(kind: str, pos: int) -> tuple[str, str, str]:
    instruction, input_, output = ORIGINALS[pos]
    if "Q" in kind:
        instruction = f"{instruction} Explain your reasoning step by step."
    if "A" in kind:
        output = f"{output} A fuller answer, number {pos}."
    return instruction, input_, output


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A store with a dataset of ORIGINALS and run 1 decided as DECISIONS."""
    path = tmp_path / "s.duckdb"
    data = tmp_path / "small.jsonl"
    data.write_text(
        "".join(
            json.dumps({"instruction": i, "input": x, "output": o}) + "\n" for i, x, o in ORIGINALS
        )
    )
    with Store.open(path) as store:
        import_dataset(store, data)
        repo = RunRepository(store)
        settings = RunSettings(
            dataset_id=repo.find_dataset("small"),
            teacher_name="embedded",
            student_name="gemma",
            student_sha256="abc",
            template="vicuna",
            max_tokens=2048,
            sample_limit=None,
            emit_unreflected=False,
            full_grid=False,
        )
        run = repo.load_run(repo.create_run(settings, {"full_grid": False}))
        run = repo.set_teacher(run, TEACHER_KEY, "embedded")
        repo.store_originals(run.dataset_id)
        for pos, ((sid, _), decided) in enumerate(zip(repo.samples(run), DECISIONS, strict=True)):
            branch, kind, ifd, rifd, emitted, override = decided
            if kind != Kind.ORI:
                made = Pair(*reflected(kind, pos))
                repo.save_reflection(sid, Kind.ORI, Kind(kind), TEACHER_KEY, [], made, None, None)
            decision = Decision(
                branch=Kind(branch),
                final_kind=Kind(kind),
                ifd_ori=None,
                ifd_q=None,
                rifd_base=None,
                rifd_reflected=None,
                ifd_final=ifd,
                rifd_final=rifd,
                ifd_margin=None,
                rifd_margin=None,
                passes=ifd < 1 and rifd < 1,
                emitted=emitted,
                reason="test",
            )
            repo.save_decision(run.run_id, sid, decision)
            if override is not None:
                set_override(store, run.run_id, sid, override)
        repo.set_status(run.run_id, RunStatus.DONE)
    return path


def srt(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def selected_pairs(positions: list[int], joined: bool = False) -> list[Pair]:
    pairs = []
    for pos in positions:
        instruction, input_, output = reflected(DECISIONS[pos][1], pos)
        if joined and input_:
            instruction, input_ = f"{instruction}\n{input_}", ""
        pairs.append(Pair(instruction, input_, output))
    return pairs


@pytest.mark.parametrize(
    ("fmt", "name"),
    [
        ("alpaca", "kept.json"),
        ("alpaca", "kept.jsonl"),
        ("sharegpt", "kept.json"),
        ("messages", "kept.jsonl"),
        ("messages", "kept.json"),
        ("parquet", "kept.parquet"),
    ],
)
def test_export_then_import_gives_the_same_pairs(
    db: Path, tmp_path: Path, fmt: str, name: str
) -> None:
    out = tmp_path / "out" / name
    result = srt("export", "1", "--format", fmt, "--out", out, "--db", db)
    assert result.exit_code == 0, result.output
    assert f"wrote 4 of 4 selected samples to {out}" in result.stderr
    entry = json.loads(result.stdout)["kept"]
    assert entry["file_name"] == name
    assert json.loads((out.parent / "dataset_info.json").read_text()) == {"kept": entry}
    # positions 0, 1, 3 (accepted by override), 4; not 2 (rejected) nor 5 (not emitted)
    expected = selected_pairs([0, 1, 3, 4], joined=fmt in ("sharegpt", "messages"))
    assert [r.pair for r in read_records(out).records] == expected
    back = srt("import", out, "--name", "back", "--strict", "--db", db)
    assert back.exit_code == 0, back.output
    with Store.open(db, read_only=True) as store:
        stored = store.query(
            "SELECT instruction, input, output FROM samples JOIN datasets USING (dataset_id) "
            "WHERE name = 'back' ORDER BY position"
        )
    assert [Pair(*row) for row in stored] == expected


def test_llama_factory_entries(db: Path, tmp_path: Path) -> None:
    info = tmp_path / "dataset_info.json"
    info.write_text(json.dumps({"alpaca_en": {"file_name": "alpaca_en.json"}}))
    for fmt, name in (("alpaca", "a.json"), ("sharegpt", "s.jsonl"), ("parquet", "p.parquet")):
        assert (
            srt("export", "1", "--format", fmt, "--out", tmp_path / name, "--db", db).exit_code == 0
        )
    entries = json.loads(info.read_text())
    assert entries["alpaca_en"] == {"file_name": "alpaca_en.json"}
    alpaca_columns = {"prompt": "instruction", "query": "input", "response": "output"}
    assert entries["a"] == {
        "file_name": "a.json",
        "formatting": "alpaca",
        "columns": alpaca_columns,
    }
    assert entries["p"] == {
        "file_name": "p.parquet",
        "formatting": "alpaca",
        "columns": alpaca_columns,
    }
    assert entries["s"] == {
        "file_name": "s.jsonl",
        "formatting": "sharegpt",
        "columns": {"messages": "conversations"},
        "tags": {
            "role_tag": "from",
            "content_tag": "value",
            "user_tag": "human",
            "assistant_tag": "gpt",
            "system_tag": "system",
        },
    }
    again = srt("export", "1", "--format", "messages", "--out", tmp_path / "a.json", "--db", db)
    assert again.exit_code == 2 and "--force" in again.stderr  # an existing file is kept
    again = srt(
        "export", "1", "--format", "messages", "--out", tmp_path / "a.json", "--force", "--db", db
    )
    assert "replaced entry 'a'" in again.stderr
    assert json.loads(info.read_text())["a"]["columns"] == {"messages": "messages"}


def test_with_scores(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "scored.json"
    assert (
        srt(
            "export", "1", "--format", "sharegpt", "--with-scores", "--out", out, "--db", db
        ).exit_code
        == 0
    )
    records = json.loads(out.read_text())
    assert [(r["ifd_ppl"], r["rifd_ppl"]) for r in records] == [
        (0.8, 0.5),
        (0.6, 0.4),
        (1.2, 0.9),
        (0.6, 0.3),
    ]
    parquet = tmp_path / "scored.parquet"
    assert (
        srt(
            "export", "1", "--format", "parquet", "--with-scores", "--out", parquet, "--db", db
        ).exit_code
        == 0
    )
    assert pq.read_table(parquet).column_names == [
        "instruction",
        "input",
        "output",
        "ifd_ppl",
        "rifd_ppl",
    ]


def test_top_k_by_ifd_among_ifd_below_one(db: Path) -> None:
    with Store.open(db, read_only=True) as store:
        rows, n = select_rows(store, 1, top_k=2)
        assert n == 4
        # IFD 1.2 (position 3) is out; 0.8 first, then the tie at 0.6 in dataset order
        assert [r.pair for r in rows] == selected_pairs([0, 1])
        rows, _ = select_rows(store, 1, top_k=10)
        assert [r.pair for r in rows] == selected_pairs([0, 1, 4])
        # ceil(0.5 x 4) = 2; ceil(0.3 x 4) = 2; ceil(0.25 x 4) = 1 despite float noise
        for fraction, k in ((0.5, 2), (0.3, 2), (0.25, 1), (0.01, 1), (1.0, 3)):
            rows, _ = select_rows(store, 1, top_fraction=fraction)
            assert len(rows) == k, fraction


def test_top_fraction_float_noise(tmp_path: Path) -> None:
    data = tmp_path / "thirty.jsonl"
    data.write_text(
        "".join(json.dumps({"instruction": f"Q{i}", "output": f"A{i}"}) + "\n" for i in range(30))
    )
    db = tmp_path / "s.duckdb"
    with Store.open(db) as store:
        report = import_dataset(store, data)
        store.execute(
            "INSERT INTO runs (dataset_id, teacher_name, teacher_key, student_name, "
            "student_sha256, template, max_tokens, emit_unreflected, config, status) "
            "VALUES (?, 't', 'k', 's', 'h', 'v', 2048, true, '{}', 'done')",
            [report.dataset_id],
        )
        store.execute(
            "INSERT INTO versions (sample_id, teacher_key, kind, instruction, input, output, "
            "pair_hash) SELECT sample_id, '', 'ori', instruction, input, output, pair_hash "
            "FROM samples"
        )
        store.execute(
            "INSERT INTO decisions (run_id, sample_id, branch, final_kind, ifd_final, "
            "rifd_final, passes, emitted, reason) SELECT 1, sample_id, 'ori', 'ori', "
            "0.5 + position / 100, 0.5, true, true, 'test' FROM samples"
        )
        rows, n = select_rows(store, 1, top_fraction=0.1)  # 0.1 * 30 = 3.0000000000000004
    assert (n, len(rows)) == (30, 3)
    assert [r.pair.instruction for r in rows] == ["Q29", "Q28", "Q27"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--top-k", "0"], "--top-k must be at least 1"),
        (["--top-fraction", "1.5"], "--top-fraction must be in (0, 1]"),
        (["--top-k", "2", "--top-fraction", "0.5"], "give --top-k or --top-fraction, not both"),
    ],
)
def test_bad_top_options(db: Path, tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "x.json"
    result = srt("export", "1", "--format", "alpaca", *args, "--out", out, "--db", db)
    assert result.exit_code == 2 and message in result.stderr
    assert not out.exists() and not (tmp_path / "dataset_info.json").exists()


def test_unknown_run_lists_the_runs(db: Path, tmp_path: Path) -> None:
    result = srt("export", "7", "--format", "alpaca", "--out", tmp_path / "x.json", "--db", db)
    assert result.exit_code == 2
    assert "no run 7; runs: 1 (small, done)" in result.stderr
    empty = tmp_path / "empty.duckdb"
    Store.open(empty).close()
    with Store.open(empty, read_only=True) as store, pytest.raises(ExportError, match="no runs"):
        export_run(store, 1, "alpaca", tmp_path / "x.json")


def test_wrong_extension_is_refused_before_writing(db: Path, tmp_path: Path) -> None:
    result = srt("export", "1", "--format", "parquet", "--out", tmp_path / "x.json", "--db", db)
    assert result.exit_code == 2 and "--format parquet writes a .parquet file" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.duckdb", "small.jsonl"]
