"""Support for the TUI tests: a store with fixed data (a dataset imported from a file with bad
records, and a finished run whose versions, scores and decisions are written with SQL, no model
needed), the Pilot helpers that drive the app like a user, and fixed machine facts for the Models
tab."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.pilot import Pilot
from textual.widgets import Input, Static
from textual.worker import WorkerState

from srt_local.config import ModelsConfig
from srt_local.importer import import_dataset
from srt_local.model_status import MISSING, PRESENT, ModelStatus, model_statuses
from srt_local.pairs import pair_hash
from srt_local.store import Store

if TYPE_CHECKING:
    from textual.app import App

STUDENT_SHA = "0" * 64
TEACHER_KEY = "test-teacher-key"

RECORDS: list[object] = [
    {
        "instruction": "Name the largest planet in the solar system.",
        "input": "",
        "output": "Jupiter.",
    },
    {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour."},
    {
        "instruction": "Give one tip for sleeping better.",
        "input": "",
        "output": "Keep a regular bedtime.",
    },
    {"instruction": "What is 12 times 7?", "input": "", "output": "84"},
    {
        "instruction": "Describe a cat in one sentence.",
        "input": "",
        "output": "A small furry animal that purrs.",
    },
    {"instruction": "List two primary colours.", "input": "", "output": "Red and blue."},
    {"instruction": 42, "input": "", "output": "a number is not an instruction"},
    {"input": "", "output": "no instruction at all"},
    {
        "instruction": "Name the largest planet in the solar system.",
        "input": "",
        "output": "Jupiter.",
    },
]

# sample position -> (Q instruction, Q output, reflected response, branch, scores, emitted)
# scores: ifd_ori, ifd_q, rifd_base, rifd_reflected
REFLECTIONS = {
    0: (
        "Explain which planet of the solar system is the largest and how its size compares "
        "with the Earth's.",
        "Jupiter is the largest planet: about 11 Earth diameters across.",
        "Jupiter is the largest planet; roughly 1,300 Earths would fit inside it.",
        "QA",
        (0.62, 0.81, 0.55, 0.48),
        True,
    ),
    1: (
        "Translate a morning greeting into French and explain when to use it.",
        "Bonjour: used from morning until early evening.",
        "Bonjour !",
        "A",
        (0.74, 0.70, 0.66, 0.51),
        True,
    ),
    2: (
        "Give three evidence-based tips for sleeping better and say why each works.",
        "Keep a regular bedtime, avoid screens late, and keep the room cool.",
        "Keep a regular bedtime and wind down without screens.",
        "Q",
        (0.58, 0.92, 0.71, 0.77),
        False,
    ),
    3: (
        "Multiply 12 by 7 and show the steps.",
        "12 x 7 = 70 + 14 = 84.",
        "84, since 12 x 7 = 84.",
        "ori",
        (0.95, 0.60, 0.82, 0.90),
        False,
    ),
    4: (
        "Describe a domestic cat's appearance and behaviour in two sentences.",
        "Cats are small furry mammals with sharp claws. They purr when content.",
        "A cat is a small, furry, purring animal.",
        "QA",
        (0.88, 1.12, 0.97, 1.04),
        False,
    ),
    5: (
        "Name the three primary colours of paint and one mix of two of them.",
        "Red, yellow and blue; red and yellow make orange.",
        "Red, yellow and blue.",
        "A",
        (0.45, 0.40, 0.35, 0.31),
        True,
    ),
}


def write_dataset_file(path: Path, records: list[object] | None = None) -> Path:
    path.write_text(json.dumps(RECORDS if records is None else records, indent=1))
    return path


def build_store(tmp: Path, records: list[object] | None = None) -> tuple[Store, int]:
    """A store at tmp/srt.duckdb with the dataset 'tiny' and a finished run on it; (store, run).
    `records` replaces the dataset's records (its first six must be good ones)."""
    store = Store.open(tmp / "srt.duckdb")
    import_dataset(store, write_dataset_file(tmp / "tiny.json", records), name="tiny")
    with store.transaction() as con:
        dataset_id = con.execute("SELECT dataset_id FROM datasets WHERE name = 'tiny'").fetchone()
        assert dataset_id is not None
        run = con.execute(
            "INSERT INTO runs (dataset_id, teacher_name, teacher_key, student_name, "
            "student_sha256, template, max_tokens, emit_unreflected, config, status) "
            "VALUES (?, 'smollm2-135m-chat', ?, 'gemma3-270m', ?, 'vicuna', 2048, false, '{}', "
            "'done') RETURNING run_id",
            [dataset_id[0], TEACHER_KEY, STUDENT_SHA],
        ).fetchone()
        assert run is not None
        run_id = int(run[0])
        samples = con.execute(
            "SELECT position, sample_id, instruction, input, output FROM samples "
            "WHERE dataset_id = ? ORDER BY position",
            [dataset_id[0]],
        ).fetchall()
        for position, sid, ins, inp, out in samples:
            q_ins, q_out, refl_out, branch, scores, emitted = REFLECTIONS[position]
            ifd_ori, ifd_q, rifd_base, rifd_refl = scores
            base_is_q = branch in ("QA", "Q")
            versions = {
                "ori": (ins, inp, out, ifd_ori, rifd_base if not base_is_q else 0.9),
                "Q": (q_ins, "", q_out, ifd_q, rifd_base if base_is_q else 0.9),
                ("QA" if base_is_q else "A"): (
                    q_ins if base_is_q else ins,
                    "" if base_is_q else inp,
                    refl_out,
                    ifd_q if base_is_q else ifd_ori,
                    rifd_refl,
                ),
            }
            for kind, (v_ins, v_inp, v_out, ifd, rifd) in versions.items():
                h = pair_hash(v_ins, v_inp, v_out)
                con.execute(
                    "INSERT INTO versions (sample_id, teacher_key, kind, instruction, input, "
                    "output, pair_hash, critique) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        sid,
                        "" if kind == "ori" else TEACHER_KEY,
                        kind,
                        v_ins,
                        v_inp,
                        v_out,
                        h,
                        None if kind == "ori" else f"The {kind} version adds detail and reasoning.",
                    ],
                )
                con.execute(
                    "INSERT INTO scores (student_sha256, template, max_tokens, pair_hash, "
                    "student_name, status, ifd_ppl, rifd_ppl) VALUES (?, 'vicuna', 2048, ?, "
                    "'gemma3-270m', 'ok', ?, ?) ON CONFLICT DO NOTHING",
                    [STUDENT_SHA, h, ifd, rifd],
                )
            final = {"QA": "QA", "Q": "Q", "A": "A", "ori": "ori"}[branch]
            ifd_final = ifd_q if base_is_q else ifd_ori
            rifd_final = rifd_refl if branch in ("QA", "A") else rifd_base
            passes = ifd_final < 1 and rifd_final < 1
            con.execute(
                "INSERT INTO decisions (run_id, sample_id, branch, final_kind, ifd_ori, ifd_q, "
                "rifd_base, rifd_reflected, ifd_final, rifd_final, ifd_margin, rifd_margin, "
                "passes, emitted, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    run_id,
                    sid,
                    branch,
                    final,
                    ifd_ori,
                    ifd_q,
                    rifd_base,
                    rifd_refl,
                    ifd_final,
                    rifd_final,
                    ifd_q - ifd_ori,
                    rifd_refl - rifd_base,
                    passes,
                    emitted,
                    "kept: IFD < 1 and r-IFD < 1"
                    if emitted
                    else (
                        "IFD or r-IFD not below 1" if not passes else "response stayed unreflected"
                    ),
                ],
            )
    return store, run_id


# ---------------------------------------------------------------- driving the app


async def settle(pilot: Pilot[Any], timeout: float = 30.0) -> None:
    """Until every queued event is handled and no worker is pending or running, twice in a row
    (handlers start workers, workers post events); fail the test if any worker raised."""
    app = pilot.app
    quiet = 0
    deadline = time.monotonic() + timeout
    while quiet < 2:
        await pilot.pause()
        busy = [w for w in app.workers if w.state in (WorkerState.PENDING, WorkerState.RUNNING)]
        quiet = 0 if busy else quiet + 1
        assert time.monotonic() < deadline, f"workers still busy: {busy}"
    errors = getattr(app, "worker_errors", [])
    assert not errors, errors


def rows(app: App[Any], selector: str) -> list[list[Any]]:
    """The rows an ArrowTable shows now."""
    from tui.widgets.arrow_table import ArrowTable

    table = app.query_one(selector, ArrowTable).table
    if table is None:
        return []
    return [table.get_row_at(i) for i in range(table.row_count)]


def records(app: App[Any], selector: str) -> list[dict[str, Any]]:
    """The rows an ArrowTable shows now, by column name."""
    from tui.widgets.arrow_table import ArrowTable

    view = app.query_one(selector, ArrowTable)
    table = view.table
    if table is None or view.data is None:
        return []
    names = view.data.column_names
    return [dict(zip(names, table.get_row_at(i), strict=True)) for i in range(table.row_count)]


def text(app: App[Any], selector: str) -> str:
    return str(app.query_one(selector, Static).render())


async def type_into(pilot: Pilot[Any], selector: str, value: str) -> None:
    """Click a field and fill it (pasted: typing a long temporary path key by key is slow)."""
    await pilot.click(selector)
    field = pilot.app.query_one(selector, Input)
    assert field.has_focus, pilot.app.focused
    field.value = value


# ---------------------------------------------------------------- a machine that never changes


class FixedMachine:
    """The Models tab's machine facts, fixed: a CPU build, every packaged GGUF present at 250 MB,
    every file path missing, every Ollama server unreachable. Snapshots taken on it look the same
    on a laptop, a GPU box and CI."""

    def statuses(self, config: ModelsConfig) -> list[ModelStatus]:
        return [self._fixed(s) for s in model_statuses(config)]

    def gpu_offload(self) -> bool:
        return False

    async def check_servers(self, statuses: list[ModelStatus]) -> list[ModelStatus]:
        return [
            replace(
                s,
                state="unreachable",
                detail=f"{s.name}: no Ollama server at {s.host}",
                problem="unreachable",
            )
            if s.served
            else s
            for s in statuses
        ]

    @staticmethod
    def _fixed(s: ModelStatus) -> ModelStatus:
        if s.served:
            return s
        spec = s.spec
        package = getattr(spec, "package", None)
        if package is None:
            path = getattr(spec, "path", None)
            return replace(
                s,
                state=MISSING,
                detail=f"{s.name}: {path}: no such file",
                file=None,
                size_bytes=None,
            )
        return replace(
            s,
            state=PRESENT,
            detail=f"{s.name}: /models/{package}.gguf",
            problem=None,
            file=Path(f"/models/{package}.gguf"),
            size_bytes=250_000_000,
        )
