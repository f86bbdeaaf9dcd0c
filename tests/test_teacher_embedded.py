"""The embedded teacher: the real SmolLM2-135M-Instruct GGUF run by llama.cpp, in json mode."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest

from srt_local.config import TeacherOptions, TeacherSpec, load_models
from srt_local.model_files import file_sha256
from srt_local.pairs import Pair
from srt_local.prompts import JSON_KEYS
from srt_local.teachers import open_teacher
from srt_local.teachers.chat import teacher_key
from srt_local.teachers.llamacpp import LlamaCppTeacher

PAIRS = [
    Pair("List two uses of a paperclip.", "", "Holding paper."),
    Pair("Translate to French.", "Good morning", "Bonjour."),
]


@pytest.fixture(scope="module")
def embedded_spec() -> TeacherSpec:
    config = load_models()
    return config.teacher(config.defaults.embedded_teacher)


def small(spec: TeacherSpec, **kw: object) -> TeacherSpec:
    options = kw.pop("options", TeacherOptions(num_ctx=1024, num_predict=64))
    return dataclasses.replace(spec, options=options, **kw)  # type: ignore[arg-type]


@pytest.mark.slow
async def test_json_mode_every_reply_parses(embedded_spec: TeacherSpec, smollm_gguf: Path) -> None:
    assert embedded_spec.backend == "llamacpp" and embedded_spec.output == "json"
    teacher = await open_teacher(embedded_spec.name, load_models())
    try:
        results = [
            await teacher.reflect("instruction", PAIRS[0]),
            await teacher.reflect("response", PAIRS[1]),
        ]
    finally:
        await teacher.aclose()
    assert isinstance(teacher, LlamaCppTeacher)
    assert teacher.concurrency == embedded_spec.concurrency == 4
    assert teacher.model_digest == file_sha256(smollm_gguf)
    # The key is the fingerprint of this very file: another digest, another key.
    fingerprint = (teacher.spec, teacher.base_options)
    assert teacher.key.startswith(f"llamacpp/{teacher.model}/")
    assert teacher.key == teacher_key(
        "llamacpp", teacher.model, file_sha256(smollm_gguf), *fingerprint
    )
    assert teacher.key != teacher_key("llamacpp", teacher.model, "0" * 64, *fingerprint)
    for stage, result in zip(("instruction", "response"), results, strict=True):
        for call in result.calls:
            # Grammar-constrained decoding: every reply is a JSON object with the stage's keys.
            reply = json.loads(call.raw_reply or "")
            assert list(reply) == list(JSON_KEYS[stage])
            assert call.outcome != "parse_failed", call.error_message
            assert call.backend == "llamacpp" and call.host is None
            assert call.model == smollm_gguf.name
            assert call.prompt_tokens and call.prompt_tokens == call.prompt_eval_count
            assert call.eval_count and call.total_duration_ms
            assert call.options["repeat_penalty"] == 1.1
        assert len(result.calls) <= embedded_spec.max_attempts
    assert results[1].reflection is None or results[1].reflection.input == "Good morning"


@pytest.mark.slow
async def test_concurrency_one_runs_one_at_a_time(embedded_spec: TeacherSpec) -> None:
    teacher = await LlamaCppTeacher.open(small(embedded_spec, max_attempts=1), concurrency=1)
    try:
        results = await asyncio.gather(*(teacher.reflect("response", p) for p in PAIRS))
    finally:
        await teacher.aclose()
    (a,), (b,) = (r.calls for r in results)
    assert a.finished_at <= b.started_at or b.finished_at <= a.started_at


async def test_timeout_is_recorded_not_retried(embedded_spec: TeacherSpec) -> None:
    teacher = await LlamaCppTeacher.open(
        small(embedded_spec, timeout=0.001, options=TeacherOptions(num_ctx=1024, num_predict=512))
    )
    try:
        result = await teacher.reflect("response", PAIRS[0])
    finally:
        await teacher.aclose()
    assert result.outcome == "error" and result.reflection is None
    assert [c.error_kind for c in result.calls] == ["timeout"]


async def test_prompt_longer_than_the_context_fails_the_sample(embedded_spec: TeacherSpec) -> None:
    teacher = await LlamaCppTeacher.open(
        small(embedded_spec, options=TeacherOptions(num_ctx=256, num_predict=32))
    )
    try:
        result = await teacher.reflect("instruction", PAIRS[0])
    finally:
        await teacher.aclose()
    assert result.outcome == "too_long"  # final for this sample: the same prompt fails again
    (call,) = result.calls
    assert call.outcome == "too_long"
    # Found before sending (srt_local.teacher_fit): even with the response cut, no room is left.
    assert call.error_kind == "prompt_too_long" and "num_ctx=256" in (call.error_message or "")
