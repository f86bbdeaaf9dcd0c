"""The student's four losses against an independent computation, on real llama.cpp and real GGUFs.

The reference here shares nothing with srt_local's scorer but the GGUF: it builds the texts from
literal strings, tokenizes them itself, decodes one sequence at a time with logits at every
position and takes a float64 log-softmax over the full vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from srt_local.config import ConfigError, StudentSpec
from srt_local.logprobs import EngineSettings, Job
from srt_local.pairs import Pair
from srt_local.scoring import score_cached
from srt_local.store import Store
from srt_local.student import PairScore, Student

TOL = 1e-4
VICUNA = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the user's questions. USER: {} ASSISTANT:"
)
VICUNA_INPUT = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the user's questions. USER: {}\nInput:\n{} ASSISTANT:"
)
ALPACA = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{}\n\n### Response:"
)
ALPACA_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{}\n\n### Input:\n{}\n\n### Response:"
)
WIZARD = "{}\n\n### Response:"
WIZARD_INPUT = "{}\n{}\n\n### Response:"
REQUEST = (
    "Below is the response to an instruction, please guess the corresponding instruction for the "
    "given response.\n{}\nGenerate the instruction for the above response."
)

PLAIN = Pair("Name three colours of the rainbow.", "", "Red, orange and yellow.")
WITH_INPUT = Pair("Translate the sentence into French.", "The cat sleeps.", "Le chat dort.")
UNICODE = Pair("Übersetze ins Japanische: „Guten Morgen“ 🌅", "", "おはようございます ☀️ — ça va?")


class Reference:
    """Token log-probabilities from llama.cpp, one sequence at a time, all positions, float64.

    Like the scorer it loads the model without the CPU "repack" kernels and without flash
    attention, and decodes at least MIN_ROWS rows (a filler sequence pads a short one):
    llama.cpp's kernels take other paths for a handful of rows, and with quantized activations
    that moves log-probabilities by up to 0.1.
    """

    MIN_ROWS = 16

    def __init__(self, path: Path) -> None:
        import llama_cpp as llama

        self.llama = llama
        llama.llama_backend_init()
        mparams = llama.llama_model_default_params()
        # The same device as the scorer's default (every layer offloaded where the build has a
        # GPU): CUDA's kernels round differently from the CPU's, by about 1% in IFD.
        mparams.n_gpu_layers = -1
        mparams.use_extra_bufts = False
        self.model = llama.llama_model_load_from_file(str(path).encode(), mparams)
        self.vocab = llama.llama_model_get_vocab(self.model)
        self.n_vocab = llama.llama_vocab_n_tokens(self.vocab)
        self.bos = llama.llama_vocab_bos(self.vocab)
        cparams = llama.llama_context_default_params()
        cparams.n_ctx = cparams.n_batch = cparams.n_ubatch = 512
        cparams.n_seq_max = 2
        cparams.kv_unified = True  # else the filler goes to a ubatch of its own
        cparams.flash_attn_type = 0
        cparams.n_outputs_max_per_seq = 0
        cparams.n_threads = cparams.n_threads_batch = 2
        self.ctx = llama.llama_init_from_model(self.model, cparams)
        template = llama.llama_model_chat_template(self.model, None)
        self.chat_template = template.decode() if template else None

    def tokenize(self, text: str, special: bool = False) -> list[int]:
        raw = text.encode()
        buf = (self.llama.llama_token * (len(raw) + 8))()
        n = self.llama.llama_tokenize(self.vocab, raw, len(raw), buf, len(buf), False, special)
        assert n >= 0
        return list(buf[:n])

    def logprobs(self, tokens: list[int]) -> np.ndarray:
        """log p(tokens[i] | tokens[:i]) for i = 1..n-1."""
        llama = self.llama
        n = len(tokens)
        filler = max(0, self.MIN_ROWS - n)
        batch = llama.llama_batch_init(n + filler, 0, 1)
        try:
            rows = [(0, i, t) for i, t in enumerate(tokens)]
            rows += [(1, i, self.bos) for i in range(filler)]
            for k, (seq, pos, token) in enumerate(rows):
                batch.token[k] = token
                batch.pos[k] = pos
                batch.n_seq_id[k] = 1
                batch.seq_id[k][0] = seq
                batch.logits[k] = 1
            batch.n_tokens = len(rows)
            llama.llama_memory_clear(llama.llama_get_memory(self.ctx), True)
            assert llama.llama_decode(self.ctx, batch) == 0
            out = np.empty(n - 1)
            for i in range(n - 1):
                ptr = llama.llama_get_logits_ith(self.ctx, i)
                row = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).astype(np.float64)
                top = row.max()
                out[i] = row[tokens[i + 1]] - top - np.log(np.exp(row - top).sum())
            return out
        finally:
            llama.llama_batch_free(batch)

    def loss(self, prompt: list[int], target: list[int]) -> float:
        """Mean loss of target after BOS + prompt."""
        lp = self.logprobs([self.bos, *prompt, *target])
        return float(-lp[len(prompt) :].mean())

    def split(self, prompt: str, target: str, special: bool) -> tuple[list[int], list[int]]:
        whole = self.tokenize(prompt + target, special)
        head = self.tokenize(prompt, special)
        if whole[: len(head)] == head:
            return head, whole[len(head) :]
        return head, self.tokenize(target, special)

    def losses(
        self, forward: str, y: str, reverse: str, x: str, special: bool = False
    ) -> tuple[float, float, float, float]:
        yp, yt = self.split(forward, y, special)
        xp, xt = self.split(reverse, x, special)
        return (self.loss(yp, yt), self.loss([], yt), self.loss(xp, xt), self.loss([], xt))

    def close(self) -> None:
        self.llama.llama_free(self.ctx)
        self.llama.llama_model_free(self.model)


@pytest.fixture(scope="module")
def gemma_ref(gemma_gguf: Path) -> Iterator[Reference]:
    ref = Reference(gemma_gguf)
    yield ref
    ref.close()


@pytest.fixture(scope="module")
def smollm_ref(smollm_gguf: Path) -> Iterator[Reference]:
    ref = Reference(smollm_gguf)
    yield ref
    ref.close()


def load(gguf: Path, template: str = "vicuna", max_tokens: int = 2048, **engine: Any) -> Student:
    # `Reference` puts BOS first on every text, so the student is held to the same rule here;
    # the GGUF's own rule (SmolLM2: no BOS) is checked against transformers by
    # scripts/side_check_hf.py.
    spec = StudentSpec(
        name=gguf.stem,
        path=gguf,
        template=template,
        max_tokens=max_tokens,
        n_threads=2,
        bos="always",
    )
    return Student.load(spec, EngineSettings(**engine))


def x_of(pair: Pair) -> str:
    return pair.instruction + ("\n" + pair.input if pair.input else "")


def expected_texts(template: str, pair: Pair) -> tuple[str, str]:
    """(T(x), T(R(y))) written out from the reference's literal strings."""
    request = REQUEST.format(pair.output)
    if template == "none":
        return x_of(pair) + "\n", request + "\n"
    plain, with_input = {
        "vicuna": (VICUNA, VICUNA_INPUT),
        "alpaca": (ALPACA, ALPACA_INPUT),
        "wizardlm": (WIZARD, WIZARD_INPUT),
    }[template]
    forward = (
        with_input.format(pair.instruction, pair.input)
        if pair.input
        else plain.format(pair.instruction)
    )
    return forward, plain.format(request)


def assert_matches(score: PairScore, expected: tuple[float, float, float, float]) -> None:
    assert score.status == "ok", score.detail
    got = (score.loss_y_given_x, score.loss_y, score.loss_x_given_y, score.loss_x)
    assert got == pytest.approx(expected, abs=TOL)
    l_yx, l_y, l_xy, l_x = expected
    assert score.ifd_ppl == pytest.approx(np.exp(l_yx - l_y), rel=1e-3)
    assert score.rifd_ppl == pytest.approx(np.exp(l_xy - l_x), rel=1e-3)
    assert score.ifd_loss == pytest.approx(l_yx / l_y, rel=1e-3)
    assert score.rifd_loss == pytest.approx(l_xy / l_x, rel=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("template", ["vicuna", "alpaca", "wizardlm", "none"])
def test_gemma_losses_equal_the_reference(
    gemma_gguf: Path, gemma_ref: Reference, template: str
) -> None:
    pairs = [PLAIN, WITH_INPUT]
    with load(gemma_gguf, template) as student:
        scores = student.score_pairs(pairs)
    for pair, score in zip(pairs, scores, strict=True):
        forward, reverse = expected_texts(template, pair)
        assert_matches(score, gemma_ref.losses(forward, pair.output, reverse, x_of(pair)))


@pytest.mark.slow
def test_smollm_chat_template_losses_equal_the_reference(
    smollm_gguf: Path, smollm_ref: Reference
) -> None:
    from jinja2 import Template

    assert smollm_ref.chat_template is not None
    template = Template(smollm_ref.chat_template)

    def chat(content: str) -> str:
        messages = [{"role": "user", "content": content}]
        return template.render(messages=messages, add_generation_prompt=True, bos_token="")

    pairs = [PLAIN, WITH_INPUT]
    with load(smollm_gguf, "chat") as student:
        scores = student.score_pairs(pairs)
    for pair, score in zip(pairs, scores, strict=True):
        forward, reverse = chat(x_of(pair)), chat(REQUEST.format(pair.output))
        assert forward.endswith("<|im_start|>assistant\n")
        expected = smollm_ref.losses(forward, pair.output, reverse, x_of(pair), special=True)
        assert_matches(score, expected)


@pytest.mark.slow
@pytest.mark.parametrize("template", ["vicuna", "none"])
def test_smollm_losses_equal_the_reference(
    smollm_gguf: Path, smollm_ref: Reference, template: str
) -> None:
    pairs = [PLAIN, WITH_INPUT, UNICODE]
    with load(smollm_gguf, template) as student:
        scores = student.score_pairs(pairs)
    for pair, score in zip(pairs, scores, strict=True):
        forward, reverse = expected_texts(template, pair)
        assert_matches(score, smollm_ref.losses(forward, pair.output, reverse, x_of(pair)))


def test_chat_template_on_a_gguf_without_one_is_a_clear_error(gemma_gguf: Path) -> None:
    with pytest.raises(ConfigError, match=r"student 'gemma.*template 'chat'"):
        load(gemma_gguf, "chat")


@pytest.mark.slow
def test_boundary_cases(gemma_gguf: Path, gemma_ref: Reference) -> None:
    long_output = " ".join(f"word{i}" for i in range(80))
    inside = Pair("Repeat after me: the sky is blue", "", "the sky is blue")
    pairs = [
        UNICODE,
        Pair("Say something.", "", ""),
        Pair("   ", "", "An answer."),
        Pair("Write many words.", "", long_output),
        Pair("Tell me. " * 40, "", "Fine."),
        inside,
    ]
    max_tokens = 64
    with load(gemma_gguf, "wizardlm", max_tokens=max_tokens) as student:
        uni, empty_y, empty_x, long, long_prompt, repeat = student.score_pairs(pairs)

    forward, reverse = expected_texts("wizardlm", UNICODE)
    assert_matches(uni, gemma_ref.losses(forward, UNICODE.output, reverse, x_of(UNICODE)))

    for score, status in (
        (empty_y, "empty_response"),
        (empty_x, "empty_instruction"),
        (long_prompt, "truncated_away"),
    ):
        assert score.status == status
        assert score.detail
        assert score.ifd_ppl is None and score.rifd_ppl is None
        assert score.ifd_loss is None and score.loss_y is None

    # Truncated from the right to max_tokens; the unconditioned text keeps as many target tokens.
    head, tail = gemma_ref.split("Write many words.\n\n### Response:", long_output, False)
    kept = max_tokens - 1 - len(head)
    assert 0 < kept < len(tail)
    assert long.status == "ok", long.detail
    assert long.n_y_tokens == kept
    assert long.loss_y_given_x == pytest.approx(gemma_ref.loss(head, tail[:kept]), abs=TOL)
    assert long.loss_y == pytest.approx(gemma_ref.loss([], tail[:kept]), abs=TOL)
    # R(y) holds the whole response: it was cut inside the request so that x still fits.
    assert long.detail is not None and "reverse request was cut" in long.detail
    assert long.n_x_tokens == len(gemma_ref.tokenize("Write many words."))

    # The target also occurs inside the prompt: only the appended tokens are scored.
    forward, reverse = expected_texts("wizardlm", inside)
    assert repeat.n_y_tokens == len(gemma_ref.split(forward, inside.output, False)[1])
    assert_matches(repeat, gemma_ref.losses(forward, inside.output, reverse, x_of(inside)))


@pytest.mark.slow
def test_a_merge_across_the_join_falls_back_to_separate_target_tokens(
    gemma_gguf: Path, gemma_ref: Reference
) -> None:
    # With no template the prompt ends on a newline; a response that starts with newlines merges
    # with it into one multi-newline token, so the prompt's tokens are no prefix of the whole's.
    pair = Pair("List two fruits.", "", "\n\nApple and pear.")
    prompt = "List two fruits.\n"
    whole = gemma_ref.tokenize(prompt + pair.output)
    head = gemma_ref.tokenize(prompt)
    assert whole[: len(head)] != head
    with load(gemma_gguf, "none") as student:
        (score,) = student.score_pairs([pair])
        assert student.boundary_fallbacks == 1
    assert score.detail is not None and "join" in score.detail
    target = gemma_ref.tokenize(pair.output)
    assert score.n_y_tokens == len(target)
    assert score.loss_y_given_x == pytest.approx(gemma_ref.loss(head, target), abs=TOL)
    assert score.loss_y == pytest.approx(gemma_ref.loss([], target), abs=TOL)


SOME_PAIRS = [
    PLAIN,
    WITH_INPUT,
    UNICODE,
    Pair("Explain why the sea is salty.", "", "Rivers carry dissolved minerals into it. " * 3),
    Pair("Give an antonym.", "happy", "Sad."),
    Pair(
        "Write a haiku about rain.",
        "",
        "Soft rain on the roof\nthe garden drinks quietly\nnight smells of wet earth",
    ),
]


def assert_same_losses(a: list[PairScore], b: list[PairScore]) -> None:
    for x, y in zip(a, b, strict=True):
        assert x.status == y.status == "ok"
        assert (x.n_y_tokens, x.n_x_tokens) == (y.n_y_tokens, y.n_x_tokens)
        for field in ("loss_y_given_x", "loss_y", "loss_x_given_y", "loss_x"):
            assert getattr(y, field) == pytest.approx(getattr(x, field), abs=TOL)


@pytest.mark.slow
@pytest.mark.parametrize("gguf_name", ["gemma_gguf", "smollm_gguf"])
def test_packed_decoding_equals_one_sequence_at_a_time(
    gguf_name: str, request: pytest.FixtureRequest
) -> None:
    gguf: Path = request.getfixturevalue(gguf_name)
    n_jobs = 4 * len(SOME_PAIRS)  # no text recurs in SOME_PAIRS
    with load(gguf, n_seq_max=1) as student:
        alone = student.score_pairs(SOME_PAIRS)
        assert student.engine.stats.decodes == n_jobs
    with load(gguf) as student:
        packed = student.score_pairs(SOME_PAIRS)
        assert student.engine.stats.decodes <= n_jobs // 4
    # Tiny decodes: most sequences are split across several, a few logits rows at a time.
    with load(gguf, n_batch=32, logits_budget_bytes=20 * 4 * 262144) as student:
        chunked = student.score_pairs(SOME_PAIRS)
        assert student.engine.stats.decodes > n_jobs
    assert_same_losses(alone, packed)
    assert_same_losses(alone, chunked)


@pytest.mark.slow
def test_sliding_window_attention_across_decodes(gemma_gguf: Path) -> None:
    # Gemma-3 attends over a 512-token window in most layers: a response past it, decoded in
    # one piece beside another pair, and in pieces of 128 tokens, scores the same.
    words = ["river", "stone", "light", "garden", "window", "paper", "cloud", "bridge"]
    long_pair = Pair("Write a long list of words.", "", " ".join(words[i % 8] for i in range(530)))
    pairs = [long_pair, PLAIN]
    with load(gemma_gguf, n_batch=1024, logits_budget_bytes=560 * 4 * 262144) as student:
        whole = student.score_pairs(pairs)
        assert student.engine.stats.decodes <= 8  # no sequence was split
        assert whole[0].n_y_tokens > 512
    with load(gemma_gguf, n_batch=128) as student:
        pieces = student.score_pairs(pairs)
        assert student.engine.stats.decodes > 8
    assert_same_losses(whole, pieces)


@pytest.mark.slow
def test_recurring_texts_are_decoded_once(smollm_gguf: Path) -> None:
    same_x = Pair(PLAIN.instruction, "", "Blue, indigo and violet.")
    with load(smollm_gguf) as student:
        student.score_pairs([PLAIN])
        one = student.engine.stats.tokens
        student.engine.stats.tokens = 0
        student.score_pairs([PLAIN, PLAIN, PLAIN])
        assert student.engine.stats.tokens == one
        student.engine.stats.tokens = 0
        scores = student.score_pairs([PLAIN, same_x])
        both = student.engine.stats.tokens
        student.engine.stats.tokens = 0
        student.score_pairs([same_x])
        # L(x) of the shared instruction was decoded once for the two pairs.
        # (a job decodes every token but its last: BOS + n_x tokens -> n_x decoded)
        assert both == one + student.engine.stats.tokens - scores[0].n_x_tokens
    assert scores[0].loss_x == scores[1].loss_x


@pytest.mark.slow
def test_progress_reports_every_sample(smollm_gguf: Path) -> None:
    seen: list[tuple[int, int]] = []
    pairs = [*SOME_PAIRS[:3], Pair("x", "", "")]
    with load(smollm_gguf) as student:
        scores = student.score_pairs(pairs, progress=lambda s, t: seen.append((s, t)))
    assert seen[-1] == (4, sum(2 * (s.n_y_tokens + s.n_x_tokens) for s in scores))
    assert [s for s, _ in seen] == sorted(s for s, _ in seen)


@pytest.mark.slow
def test_score_cache_scores_each_pair_once(smollm_gguf: Path, tmp_path: Path) -> None:
    pairs = [PLAIN, WITH_INPUT, PLAIN, Pair("Say hi.", "", "")]
    with Store.open(tmp_path / "s.duckdb") as store, load(smollm_gguf) as student:
        first = score_cached(student, pairs, store)
        decodes = student.engine.stats.decodes
        assert decodes > 0
        again = score_cached(student, pairs, store)
        assert student.engine.stats.decodes == decodes  # nothing decoded the second time
        rows = store.query("SELECT count(*) FROM scores")[0][0]
        assert rows == 3  # one per distinct pair, the failed one included
        # A rerun with more pairs scores only the new one.
        more = score_cached(student, [*pairs, UNICODE], store)
        assert store.query("SELECT count(*) FROM scores")[0][0] == 4
    assert first == again == more[:4]
    assert first[0] == first[2]
    assert first[3].status == "empty_response"
    assert more[4].status == "ok"


@pytest.mark.slow
def test_a_failed_decode_is_retried_alone_and_reported(smollm_gguf: Path) -> None:
    with load(smollm_gguf) as student:
        engine = student.engine
        good = Job((engine.bos, *engine.tokenize("A short sentence to score.")), 2)
        bad = Job((engine.bos, engine.n_vocab + 7, *engine.tokenize(" and more")), 2)
        other = Job((engine.bos, *engine.tokenize("Another one.")), 1)
        alone = engine.score([good])[0]
        results = engine.score([good, bad, other])
        assert engine.stats.failures == 2  # the pack, then the bad job alone
        assert engine.last_error is not None and "llama_decode returned" in engine.last_error
    assert results[1] is None
    assert results[0] == alone
    assert results[2] is not None and math.isfinite(results[2])
