"""The student: IFD and r-IFD of instruction pairs, scored by a GGUF model on llama.cpp.

For a pair (x, y) four mean losses over target tokens only (METHOD.md):
L(y|T(x)), L(y), L(x|T(R(y))) and L(x). A scored text starts with the vocabulary's BOS token where
the GGUF's add-BOS flag says so (`srt_local.bos`, `bos = "always"` for every text); without BOS an
unconditioned text's first token is its context and the rest are its targets, as in the reference.

Token boundaries are exact: the prompt is tokenized alone and with the target appended; when the
prompt's tokens are a prefix of the whole text's tokens, the rest are the target's. When a merge
crosses the join they are not, and the target is tokenized on its own after the prompt's tokens
(recorded in `detail` and counted in `boundary_fallbacks`). The text is never searched.

An unconditioned text is BOS plus the very target tokens scored in the conditioned text (the
tokens of the raw text, except at a join that merged), cut to as many as survived truncation
there, so both means cover the same tokens.

A field far longer than any scored text can hold is cut by characters before it is tokenized
(`_bounded`): tokenizing a 20 MB field only to keep its first max_tokens tokens cost a minute and
gigabytes. The cut is placed where it leaves the first max_tokens tokens unchanged.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from srt_local.bos import score_key, student_uses_bos
from srt_local.config import StudentSpec
from srt_local.logprobs import EngineSettings, Job, LlamaEngine
from srt_local.model_files import file_sha256, resolve_gguf
from srt_local.pairs import Pair
from srt_local.templates import Conditioning, instruction_text, make_conditioning

STATUS_OK = "ok"
STATUS_EMPTY_RESPONSE = "empty_response"
STATUS_EMPTY_INSTRUCTION = "empty_instruction"
STATUS_TRUNCATED_AWAY = "truncated_away"
STATUS_DECODE_ERROR = "decode_error"
STATUS_ZERO_LOSS = "zero_loss"

BOUNDARY_NOTE = "a merge crossed the prompt/target join; the target was tokenized on its own"
# `_bounded`: the first cut tried, in characters per max_tokens token (text averages about 4), and
# the tokens beyond max_tokens that must agree before a cut is trusted.
BOUND_CHARS_PER_TOKEN = 16
BOUND_SLACK_TOKENS = 64

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PairScore:
    """The student's verdict on one pair. Derived scores are None unless status is "ok"."""

    status: str
    detail: str | None
    loss_y_given_x: float | None
    loss_y: float | None
    loss_x_given_y: float | None
    loss_x: float | None
    n_y_tokens: int
    n_x_tokens: int
    ifd_ppl: float | None
    rifd_ppl: float | None
    ifd_loss: float | None
    rifd_loss: float | None

    @classmethod
    def failed(
        cls, status: str, detail: str, n_y_tokens: int = 0, n_x_tokens: int = 0
    ) -> PairScore:
        return cls(
            status, detail, None, None, None, None, n_y_tokens, n_x_tokens, None, None, None, None
        )

    @classmethod
    def from_losses(
        cls,
        loss_y_given_x: float,
        loss_y: float,
        loss_x_given_y: float,
        loss_x: float,
        n_y_tokens: int,
        n_x_tokens: int,
        detail: str | None = None,
    ) -> PairScore:
        """The scores from the four mean losses; a non-finite or zero loss is a failed status."""
        losses = (loss_y_given_x, loss_y, loss_x_given_y, loss_x)
        if not all(math.isfinite(v) for v in losses):
            return cls.failed(
                STATUS_DECODE_ERROR, f"non-finite loss {losses}", n_y_tokens, n_x_tokens
            )
        if loss_y <= 0.0 or loss_x <= 0.0:
            detail = "an unconditioned loss is 0: the loss ratios are undefined"
            return cls(
                STATUS_ZERO_LOSS, detail, *losses, n_y_tokens, n_x_tokens, None, None, None, None
            )
        return cls(
            STATUS_OK,
            detail,
            *losses,
            n_y_tokens,
            n_x_tokens,
            ifd_ppl=math.exp(loss_y_given_x - loss_y),
            rifd_ppl=math.exp(loss_x_given_y - loss_x),
            ifd_loss=loss_y_given_x / loss_y,
            rifd_loss=loss_x_given_y / loss_x,
        )


@dataclass
class _PairPlan:
    """The jobs one pair needs (indices into the call's unique jobs), or why it needs none."""

    failure: PairScore | None = None
    jobs: tuple[int, int, int, int] = (-1, -1, -1, -1)  # y|x, y, x|y, x
    n_y: int = 0
    n_x: int = 0
    note: str | None = None


class Student:
    """A GGUF student on llama.cpp. One scoring call at a time (a lock enforces it)."""

    def __init__(
        self,
        spec: StudentSpec,
        gguf_path: Path,
        sha256: str,
        engine: LlamaEngine,
        conditioning: Conditioning,
        bos: bool = True,
    ) -> None:
        self.name = spec.name
        self.sha256 = sha256
        self.bos = bos  # texts start with BOS (srt_local.bos)
        # The scores' cache key: the template's name, suffixed when texts have no BOS.
        self.template = score_key(spec.template, bos)
        self.max_tokens = spec.max_tokens
        self.gguf_path = gguf_path
        self.engine = engine
        self.conditioning = conditioning
        self.boundary_fallbacks = 0
        # Part of the scores' cache key: "host" or "device" (where log p(target) was reduced).
        self.score_path = engine.scoring_path
        self._lock = threading.Lock()

    @classmethod
    def load(cls, spec: StudentSpec, settings: EngineSettings | None = None) -> Student:
        """Resolve and hash the GGUF, load it (all layers on the GPU when the build has one).

        The spec's engine keys that are set (not 0 / "auto") win over `settings`."""
        path = resolve_gguf(spec.path, spec.package)
        sha = file_sha256(path)
        base = settings or EngineSettings()
        chosen = {
            key: getattr(spec, key)
            for key in (
                "n_batch",
                "n_ubatch",
                "n_seq_max",
                "rows_per_decode",
                "kv_align",
                "scoring_path",
                "fixed_shape",
            )
            if getattr(spec, key) not in (0, "auto")
        }
        engine = LlamaEngine(
            path,
            replace(
                base,
                n_ctx=spec.max_tokens,
                n_threads=spec.n_threads,
                n_gpu_layers=spec.n_gpu_layers,
                **chosen,
            ),
        )
        try:
            conditioning = make_conditioning(
                spec.template, spec.name, engine.chat_template, engine.eos_text
            )
        except BaseException:
            engine.close()
            raise
        return cls(spec, path, sha, engine, conditioning, student_uses_bos(spec.bos, path))

    def __enter__(self) -> Student:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Free the model."""
        with self._lock:
            self.engine.close()

    # ------------------------------------------------------------------ planning

    def _tokenize_pair(self, prompt: str, target: str) -> tuple[list[int], list[int], bool]:
        """(prompt tokens, target tokens, merged) with an exact, checked boundary."""
        special = self.conditioning.special_tokens_in_text
        whole = self.engine.tokenize(prompt + target, special)
        head = self.engine.tokenize(prompt, special)
        if whole[: len(head)] == head:
            return head, whole[len(head) :], False
        return head, self.engine.tokenize(target, special), True

    def _conditioned_split(
        self, split: tuple[list[int], list[int], bool], what: str
    ) -> tuple[list[int], list[int], bool] | PairScore:
        """Prompt tokens (BOS first) and the target tokens that survive truncation."""
        head, tail, merged = split
        if self.bos:
            head = [self.engine.bos, *head]
        elif not head:
            # No BOS and an empty prompt (template "none"): the first token can only be context.
            head, tail = tail[:1], tail[1:]
        keep = min(len(tail), self.max_tokens - len(head))
        if keep <= 0:
            return PairScore.failed(
                STATUS_TRUNCATED_AWAY,
                f"the {what} prompt alone has {len(head)} tokens and max_tokens is "
                f"{self.max_tokens}: no {what} token is left to score",
            )
        return head, tail[:keep], merged

    def _bounded(self, text: str) -> str:
        """`text`, or a prefix of it whose tokens start with the same max_tokens + slack tokens.

        Every scored text holds at most max_tokens tokens, so no more than that many of any one
        field can be scored. A prefix of c characters is kept when its first max_tokens + slack
        tokens are those of the prefix twice as long: a cut changes tokens only near itself
        (where a word or merge is broken), so tokens that a doubled cut leaves unchanged are the
        whole text's. Short prefixes are tried first and grown fourfold, so the cost is bounded
        by a few times the characters needed, never the field's length.
        """
        need = self.max_tokens + BOUND_SLACK_TOKENS
        chars = BOUND_CHARS_PER_TOKEN * self.max_tokens
        special = self.conditioning.special_tokens_in_text
        while 2 * chars < len(text):
            head = self.engine.tokenize(text[:chars], special)[:need]
            if (
                len(head) == need
                and self.engine.tokenize(text[: 2 * chars], special)[:need] == head
            ):
                return text[:chars]
            chars *= 4
        return text

    def _reverse(
        self, pair: Pair, y_cut: bool = False
    ) -> tuple[tuple[list[int], list[int], bool] | PairScore, str | None]:
        """The r-IFD texts. R(y) contains the whole response, so a long one would push x out of
        max_tokens (the reference then scores nothing and gets NaN): the response inside the
        request is cut short instead, just enough for x to fit."""
        x = instruction_text(pair)
        y = pair.output
        split = self._tokenize_pair(self.conditioning.reverse_prompt(y), x)
        over = int(self.bos) + len(split[0]) + len(split[1]) - self.max_tokens
        if over <= 0:
            return self._conditioned_split(split, "instruction"), None
        special = self.conditioning.special_tokens_in_text
        y_tokens = self.engine.tokenize(y, special)
        keep = len(y_tokens) - over
        while keep > 0:
            split = self._tokenize_pair(
                self.conditioning.reverse_prompt(self.engine.detokenize(y_tokens[:keep])), x
            )
            over = int(self.bos) + len(split[0]) + len(split[1]) - self.max_tokens
            if over <= 0:
                break
            keep -= over
        if keep <= 0:
            keep = 0
            split = self._tokenize_pair(self.conditioning.reverse_prompt(""), x)
        of = f"more than {len(y_tokens)}" if y_cut else f"{len(y_tokens)}"
        note = f"the response inside the reverse request was cut to {keep} of {of} tokens to fit max_tokens"
        return self._conditioned_split(split, "instruction"), note

    def _plan(self, pair: Pair, index: dict[Job, int], jobs: list[Job]) -> _PairPlan:
        if not pair.output.strip():
            return _PairPlan(PairScore.failed(STATUS_EMPTY_RESPONSE, "the response is empty"))
        if not pair.instruction.strip():
            return _PairPlan(PairScore.failed(STATUS_EMPTY_INSTRUCTION, "the instruction is empty"))
        whole = pair
        pair = Pair(*(self._bounded(t) for t in (pair.instruction, pair.input, pair.output)))
        forward = self._conditioned_split(
            self._tokenize_pair(self.conditioning.forward_prompt(pair), pair.output), "response"
        )
        if isinstance(forward, PairScore):
            return _PairPlan(forward)
        reverse, cut_note = self._reverse(pair, y_cut=pair.output != whole.output)
        if isinstance(reverse, PairScore):
            return _PairPlan(reverse)

        def job(tokens: list[int], start: int) -> int:
            key = Job(tuple(tokens), start)
            if key not in index:
                index[key] = len(jobs)
                jobs.append(key)
            return index[key]

        (y_head, y, y_merged), (x_head, x, x_merged) = forward, reverse
        # Unconditioned: BOS then the text, or (no BOS) the text whose first token is context.
        lead = [self.engine.bos] if self.bos else []
        if not self.bos and (len(y) < 2 or len(x) < 2):
            return _PairPlan(
                PairScore.failed(
                    STATUS_TRUNCATED_AWAY,
                    "without BOS a one-token text has no token to score unconditioned",
                )
            )
        ids = (
            job(y_head + y, len(y_head)),
            job(lead + y, 1),
            job(x_head + x, len(x_head)),
            job(lead + x, 1),
        )
        self.boundary_fallbacks += int(y_merged) + int(x_merged)
        notes = [BOUNDARY_NOTE] if y_merged or x_merged else []
        notes += [cut_note] if cut_note else []
        return _PairPlan(None, ids, len(y), len(x), "; ".join(notes) or None)

    def plan(self, pairs: Sequence[Pair]) -> tuple[list[Job], list[tuple[int, ...] | None]]:
        """The distinct token sequences these pairs need, and each pair's four of them
        (indices: y|x, y, x|y, x), or None for a pair that fails before decoding."""
        index: dict[Job, int] = {}
        jobs: list[Job] = []
        plans = [self._plan(pair, index, jobs) for pair in pairs]
        return jobs, [plan.jobs if plan.failure is None else None for plan in plans]

    # ------------------------------------------------------------------ scoring

    def score_pairs(
        self, pairs: Sequence[Pair], progress: Progress | None = None
    ) -> list[PairScore]:
        """Score each pair; results in input order. Texts that recur are decoded once.

        `progress(samples_done, target_tokens_done)` (cumulative for this call) is called from
        this thread as pairs complete.
        """
        with self._lock:
            index: dict[Job, int] = {}
            jobs: list[Job] = []
            plans = [self._plan(pair, index, jobs) for pair in pairs]
            waiting: list[list[int]] = [[] for _ in jobs]
            remaining: list[int] = []
            done = [0, 0]
            for p, plan in enumerate(plans):
                unique = set(plan.jobs) if plan.failure is None else set()
                remaining.append(len(unique))
                for j in unique:
                    waiting[j].append(p)
                if not unique:
                    done[0] += 1
            if progress is not None and done[0]:
                progress(done[0], 0)

            def on_done(j: int, _value: float | None) -> None:
                for p in waiting[j]:
                    remaining[p] -= 1
                    if remaining[p] == 0:
                        done[0] += 1
                        done[1] += 2 * (plans[p].n_y + plans[p].n_x)
                        if progress is not None:
                            progress(done[0], done[1])

            sums = self.engine.score(jobs, on_done)
            return [self._result(plan, jobs, sums) for plan in plans]

    def _result(self, plan: _PairPlan, jobs: list[Job], sums: list[float | None]) -> PairScore:
        if plan.failure is not None:
            return plan.failure
        values = [sums[j] for j in plan.jobs]
        if any(v is None for v in values):
            return PairScore.failed(
                STATUS_DECODE_ERROR,
                f"llama.cpp failed on this pair's texts, also alone: {self.engine.last_error}",
                plan.n_y,
                plan.n_x,
            )
        l_yx, l_y, l_xy, l_x = (
            -(v or 0.0) / jobs[j].n_target for v, j in zip(values, plan.jobs, strict=True)
        )
        return PairScore.from_losses(l_yx, l_y, l_xy, l_x, plan.n_y, plan.n_x, detail=plan.note)
