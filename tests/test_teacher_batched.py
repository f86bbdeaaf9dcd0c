"""The embedded teacher's batched decoding: several replies at once, each the same as the
sequential path's (llama-cpp-python's create_chat_completion) at temperature 0."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest

from srt_local.config import TeacherOptions, TeacherSpec, load_models
from srt_local.pairs import Pair
from srt_local.prompts import build_prompt
from srt_local.teachers.llamacpp import LlamaCppTeacher

PAIRS = [
    Pair("List two uses of a paperclip.", "", "Holding paper."),
    Pair("Translate to French.", "Good morning", "Bonjour."),
    Pair("Name a primary colour.", "", "Blue."),
    Pair("What is 2 + 2?", "", "4"),
]
# (stage, output mode) per pair: both grammars and the unconstrained markers mode.
MODES = [
    ("response", "json"),
    ("instruction", "json"),
    ("response", "markers"),
    ("response", "json"),
]
NUM_PREDICT = 40


@pytest.fixture(scope="module")
def spec() -> TeacherSpec:
    config = load_models()
    embedded = config.teacher(config.defaults.embedded_teacher)
    return dataclasses.replace(
        embedded, options=TeacherOptions(num_ctx=1024, num_predict=NUM_PREDICT), max_attempts=1
    )


async def _replies(teacher: LlamaCppTeacher) -> list[tuple[str | None, int | None]]:
    options = teacher.options_for(0)
    prompts = [
        build_prompt(stage, pair, output, teacher.schema_chars if output == "json" else None)
        for (stage, output), pair in zip(MODES, PAIRS, strict=True)
    ]
    gens = await asyncio.gather(*(teacher._send(p, options) for p in prompts))
    assert all(g.error_kind is None for g in gens), [g.error_message for g in gens]
    return [(g.text, g.eval_count) for g in gens]


@pytest.mark.slow
async def test_parallel_replies_equal_the_sequential_path(
    spec: TeacherSpec, smollm_gguf: Path
) -> None:
    from llama_cpp import Llama

    teacher = await LlamaCppTeacher.open(spec, concurrency=4)
    try:
        batched = await _replies(teacher)
        options = teacher.options_for(0)
        schema_chars = teacher.schema_chars
    finally:
        await teacher.aclose()
    # The sequential path: one chat completion at a time on a context of its own.
    llama = Llama(
        model_path=str(smollm_gguf),
        chat_format="chat_template.default",
        n_ctx=1024,
        n_threads=2,
        seed=0,
        verbose=False,
    )
    try:
        for (stage, output), pair, (text, n_tokens) in zip(MODES, PAIRS, batched, strict=True):
            prompt = build_prompt(stage, pair, output, schema_chars if output == "json" else None)
            llama.reset()
            fmt = {"type": "json_object", "schema": prompt.schema} if prompt.schema else None
            reply = llama.create_chat_completion(
                messages=prompt.messages,  # type: ignore[arg-type]
                temperature=0.0,
                seed=options["seed"],
                max_tokens=NUM_PREDICT,
                repeat_penalty=options["repeat_penalty"],
                response_format=fmt,  # type: ignore[arg-type]
            )
            assert isinstance(reply, dict)
            assert text == reply["choices"][0]["message"]["content"], (stage, output)
            assert n_tokens == reply["usage"]["completion_tokens"]
            if output == "json" and reply["choices"][0]["finish_reason"] == "stop":
                json.loads(text or "", strict=False)  # the grammar lets a raw newline into a string
    finally:
        llama.close()


@pytest.mark.slow
async def test_replies_overlap_and_do_not_depend_on_concurrency(spec: TeacherSpec) -> None:
    one = await LlamaCppTeacher.open(spec, concurrency=1)
    try:
        alone = await _replies(one)
    finally:
        await one.aclose()
    four = await LlamaCppTeacher.open(spec, concurrency=4)
    try:
        results = await asyncio.gather(*(four.reflect("response", p) for p in PAIRS))
        together = await _replies(four)
    finally:
        await four.aclose()
    # llama.cpp's CPU kernels are not batch-invariant for mixed decodes (one sequence's prompt
    # beside others' next tokens): at a near-tie a greedy reply may take the other token. Seen
    # for at most one reply of four; the rest must be the same text and length.
    same = sum(a == b for a, b in zip(together, alone, strict=True))
    assert same >= len(alone) - 1, (together, alone)
    calls = [c for r in results for c in r.calls]
    # Four requests in four sequences: all were running at the same moment.
    assert max(c.started_at for c in calls) < min(c.finished_at for c in calls)
    assert {c.host for c in calls} == {None}


@pytest.mark.slow
async def test_a_cancelled_request_frees_its_sequence(spec: TeacherSpec) -> None:
    long = dataclasses.replace(spec, options=TeacherOptions(num_ctx=1024, num_predict=400))
    teacher = await LlamaCppTeacher.open(long, concurrency=1)
    try:
        task = asyncio.create_task(teacher.reflect("response", PAIRS[0]))
        await asyncio.sleep(1.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The only sequence is free again: a new request is served (and not after 400 tokens
        # of the cancelled one).
        quick = teacher.options_for(0) | {"num_predict": 4}
        prompt = build_prompt("response", PAIRS[1], "json", teacher.schema_chars)
        gen = await asyncio.wait_for(teacher._send(prompt, quick), 60)
        assert gen.error_kind is None and gen.eval_count == 4 and gen.hit_limit
    finally:
        await teacher.aclose()


async def test_warm_retry_samples_under_the_grammar(spec: TeacherSpec) -> None:
    """A re-ask runs warm (temperature > 0): the full sampler chain with the grammar in it."""
    teacher = await LlamaCppTeacher.open(spec, concurrency=2)
    try:
        options = teacher.options_for(1)
        assert options["temperature"] > 0
        prompt = build_prompt("response", PAIRS[2], "json", teacher.schema_chars)
        gen = await teacher._send(prompt, options | {"num_predict": 200})
    finally:
        await teacher.aclose()
    assert gen.error_kind is None
    assert (gen.text or "").lstrip().startswith("{")
    if not gen.hit_limit:
        assert set(json.loads(gen.text or "")) == {"critique", "better_answer"}


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_closing_fails_queued_requests_instead_of_hanging(
    spec: TeacherSpec, concurrency: int
) -> None:
    # At 4, on 2 or more cores: several lanes, each told to stop once.
    teacher = await LlamaCppTeacher.open(spec, concurrency=concurrency)
    prompt = build_prompt("response", PAIRS[0], "json", teacher.schema_chars)
    options = teacher.options_for(0) | {"num_predict": 8}
    sends = [asyncio.create_task(teacher._send(prompt, options)) for _ in range(concurrency + 2)]
    await asyncio.sleep(0.2)
    await teacher.aclose()
    gens = await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), 60)
    kinds = [g.error_kind if not isinstance(g, BaseException) else "raised" for g in gens]
    # The request in flight finishes; the queued ones end with an error, none hangs.
    assert all(k in (None, "llama_error", "raised") for k in kinds), kinds


async def test_a_failing_decoder_fails_its_requests_instead_of_hanging(
    spec: TeacherSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    from srt_local.teachers import TeacherError
    from srt_local.teachers.batched import _Lane

    def broken(self: _Lane, *args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(_Lane, "_step", broken)
    teacher = await LlamaCppTeacher.open(spec, concurrency=2)
    try:
        prompt = build_prompt("response", PAIRS[0], "json", teacher.schema_chars)
        options = teacher.options_for(0)
        gens = await asyncio.wait_for(
            asyncio.gather(*(teacher._send(prompt, options) for _ in range(2))), 60
        )
        assert [g.error_kind for g in gens] == ["llama_error"] * 2
        assert "boom" in (gens[0].error_message or "")
        with pytest.raises(TeacherError, match="closed"):
            await teacher._send(prompt, options)
    finally:
        await teacher.aclose()


@pytest.mark.parametrize(
    ("n_seq", "threads", "offloaded", "n_params", "sizes", "decode", "prompt"),
    [
        # A small model on a CPU: a lane per core, each decoding on one thread.
        (4, 2, False, 135_000_000, (2, 2), 1, 1),
        (1, 2, False, 135_000_000, (1,), 1, 2),
        (3, 2, False, 135_000_000, (2, 1), 1, 1),
        (2, 16, False, 135_000_000, (1, 1), 1, 8),
        # A large model has enough work per node to share it between threads.
        (2, 16, False, 8_000_000_000, (1, 1), 8, 8),
        # On a GPU one lane batches everything.
        (4, 2, True, 135_000_000, (4,), 2, 2),
    ],
)
def test_lanes_follow_the_cores_and_the_device(
    n_seq: int,
    threads: int,
    offloaded: bool,
    n_params: int,
    sizes: tuple[int, ...],
    decode: int,
    prompt: int,
) -> None:
    from srt_local.teachers.batched import LanePlan, plan_lanes

    assert plan_lanes(n_seq, threads, offloaded, n_params) == LanePlan(sizes, decode, prompt)


@pytest.mark.slow
async def test_two_lanes_write_the_replies_of_one(
    spec: TeacherSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrency 4 on 2 cores runs two lanes; their replies are one lane's, token for token."""
    import srt_local.teachers.llamacpp as llamacpp

    real = llamacpp.plan_lanes
    plans: list[tuple[int, ...]] = []

    def plan(n_seq: int, threads: int, offloaded: bool, n_params: int) -> object:
        chosen = real(n_seq, 2, False, n_params)
        plans.append(chosen.sizes)
        return chosen

    monkeypatch.setattr(llamacpp, "plan_lanes", plan)
    teacher = await LlamaCppTeacher.open(spec, concurrency=4)
    try:
        two_lanes = await _replies(teacher)
    finally:
        await teacher.aclose()
    monkeypatch.setattr(llamacpp, "plan_lanes", lambda n, t, o, p: real(n, 1, False, p))
    teacher = await LlamaCppTeacher.open(spec, concurrency=4)
    try:
        one_lane = await _replies(teacher)
    finally:
        await teacher.aclose()
    assert plans == [(2, 2)]
    assert two_lanes == one_lane


async def test_closing_after_a_lane_failed_ends_the_idle_lanes_too(
    spec: TeacherSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from srt_local.teachers.batched import _Lane

    def broken(self: _Lane, *args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(_Lane, "_step", broken)
    teacher = await LlamaCppTeacher.open(spec, concurrency=4)  # on 2+ cores: lanes of 2 each
    try:
        prompt = build_prompt("response", PAIRS[0], "json", teacher.schema_chars)
        gen = await asyncio.wait_for(teacher._send(prompt, teacher.options_for(0)), 60)
        assert gen.error_kind == "llama_error"
    finally:
        await teacher.aclose()
    # The lanes that never had work were waiting for some: closing still ends them.
    assert not [t for t in threading.enumerate() if t.name.startswith("llamacpp-teacher")]
