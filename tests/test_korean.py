"""Any language: a Korean sample through import, both reflections (an Ollama-protocol test server
replying in Korean), scoring and export, with every text intact."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from srt_local.config import TeacherOptions, TeacherSpec, load_models
from srt_local.exporter import export_run
from srt_local.importer import import_dataset
from srt_local.pairs import Pair
from srt_local.pipeline import run_pipeline
from srt_local.prompts import build_prompt
from srt_local.run.protocols import Reflector, Scorer
from srt_local.run.repository import RunRepository, RunRow, RunSettings
from srt_local.run.vocabulary import Profile, RunStatus
from srt_local.store import Store
from srt_local.teachers.chat import RetryPolicy
from srt_local.teachers.ollama import OllamaTeacher
from tests.fakes import FakeScorer
from tests.ollama_server import OllamaTestServer, Reply

ORIGINAL = Pair("서울에 대해 알려 주세요.", "", "서울은 한국의 수도입니다.")
NEW_INSTRUCTION = (
    "서울의 역사, 문화, 경제를 각각 한 단락씩 설명하고, 세 가지가 서로 어떻게 연결되는지 논하세요."
)
NEW_ANSWER = (
    "서울은 600년이 넘는 역사를 가진 도시입니다. 조선의 수도였고, 오늘날에는 경제의 중심입니다."
)
BETTER = "역사: 조선 왕조의 수도였습니다. 문화: 궁궐과 한류가 공존합니다. 경제: 한국 GDP의 상당 부분을 차지합니다."
INSTRUCTION_REPLY = (
    f"분석: 원래 지시는 너무 넓고 답변은 한 줄뿐입니다.\n\n[New Instruction]\n{NEW_INSTRUCTION}\n[End]\n\n"
    f"[New Answer]\n{NEW_ANSWER}\n[End]"
)
RESPONSE_REPLY = f"분석: 답변이 더 자세해야 합니다.\n\n[Better Answer]\n{BETTER}\n[End]"


def test_a_korean_sample_keeps_its_text_from_import_to_export(tmp_path: Path) -> None:
    data = tmp_path / "ko.jsonl"
    data.write_text(
        json.dumps(
            {"instruction": ORIGINAL.instruction, "input": "", "output": ORIGINAL.output},
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )
    store = Store.open(tmp_path / "s.duckdb")
    import_dataset(store, data, name="ko")
    repo = RunRepository(store)
    run_id = repo.create_run(
        RunSettings(
            dataset_id=repo.find_dataset("ko"),
            teacher_name="test-ollama",
            student_name="fake-student",
            student_sha256="0" * 64,
            template="vicuna",
            max_tokens=2048,
            sample_limit=None,
            emit_unreflected=False,
            full_grid=False,
            profile=Profile.DEFAULT,
        ),
        {"full_grid": False},
    )
    q = Pair(NEW_INSTRUCTION, "", NEW_ANSWER)
    qa = Pair(NEW_INSTRUCTION, "", BETTER)
    # Q raises IFD, QA lowers r-IFD and passes: the Korean QA is emitted.
    scorer = FakeScorer({ORIGINAL: (0.5, 0.5), q: (0.8, 0.7), qa: (0.9, 0.3)})

    with OllamaTestServer() as server:
        server.script(Reply(INSTRUCTION_REPLY), Reply(RESPONSE_REPLY))
        spec = TeacherSpec(
            name="test-ollama",
            backend="ollama",
            model=server.model,
            host=server.url,
            options=TeacherOptions(num_ctx=4096, num_predict=512),
            timeout=5.0,
        )

        async def make_reflector(_run: RunRow, _log: Callable[[str], None]) -> Reflector:
            return await OllamaTeacher.open(spec, retry=RetryPolicy(base_delay=0.01))

        async def make_scorer(_run: RunRow) -> Scorer:
            return scorer

        summary = run_pipeline(
            store,
            run_id,
            load_models(),
            reflector_factory=make_reflector,
            scorer_factory=make_scorer,
        )
        asked = [r.body["messages"][1]["content"] for r in server.chat_requests]

    assert summary.status == RunStatus.DONE and summary.kept == 1
    assert ORIGINAL.instruction in asked[0] and NEW_INSTRUCTION in asked[1]
    assert "language" in asked[0]  # the prompt asks to keep the original's language
    assert q in scorer.scored and qa in scorer.scored
    assert store.query("SELECT instruction, output FROM versions WHERE kind = 'QA'") == [
        (NEW_INSTRUCTION, BETTER)
    ]
    out = tmp_path / "out" / "ko.json"
    export_run(store, run_id, "alpaca", out)
    exported = json.loads(out.read_text(encoding="utf-8"))
    assert exported == [{"instruction": NEW_INSTRUCTION, "input": "", "output": BETTER}]
    assert NEW_INSTRUCTION in out.read_text(encoding="utf-8")  # written as UTF-8, not \\u escapes


def test_a_korean_pair_is_scored_by_a_real_student(gemma_gguf: Path) -> None:
    """The real student scores Korean text (one pair, the smaller cost of a real-model test)."""
    from srt_local.config import StudentSpec
    from srt_local.student import Student

    with Student.load(StudentSpec(name="gemma", path=gemma_gguf)) as student:
        (score,) = student.score_pairs([Pair(NEW_INSTRUCTION, "", BETTER)])
    assert score.status == "ok" and score.ifd_ppl is not None and score.rifd_ppl is not None
    assert score.n_y_tokens > 10 and score.n_x_tokens > 10


def test_the_prompt_carries_korean_unchanged() -> None:
    user = build_prompt("response", ORIGINAL, "markers").messages[1]["content"]
    assert ORIGINAL.instruction in user and ORIGINAL.output in user
