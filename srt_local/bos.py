"""Whether a student's scored texts start with the BOS token, and how that enters the score key.

Decided on evidence (README, "Fidelity"): follow the GGUF's own `tokenizer.ggml.add_bos_token`, as
the model's Hugging Face tokenizer does, so llama.cpp scores the very token sequences the reference
code (transformers, `tokenizer.encode`) scores. A GGUF that does not say adds BOS (llama.cpp's
default for SentencePiece vocabularies, and srt-local's earlier behaviour); `bos = "always"` in
models.toml restores BOS everywhere.

Without BOS an unconditioned text starts with its own first token, which is then context, not a
target: L(y) averages over y's tokens 2..n, exactly as `model(ids, labels=ids)` does in the
reference. The conditioned text starts with the template's first token and scores every target
token.

The choice is part of the scores' cache key as a suffix of the template name ("vicuna+nobos"), so the
scores table keeps its primary key (another branch adds a column to it) and rows scored with BOS
keep their plain template name: they stay valid where the choice did not change them.
"""

from __future__ import annotations

from pathlib import Path

from srt_local.model_files import read_gguf_info

NO_BOS_SUFFIX = "+nobos"


def uses_bos(rule: str, gguf_add_bos: bool | None) -> bool:
    """`rule` is StudentSpec.bos: "always", or "gguf" (the file's flag; BOS when it is absent)."""
    return rule == "always" or gguf_add_bos is not False


def score_key(template: str, bos: bool) -> str:
    """The template column of a score: the template's name, suffixed when texts have no BOS."""
    return template if bos else template + NO_BOS_SUFFIX


def student_uses_bos(rule: str, gguf: Path) -> bool:
    """Whether a student on `gguf` starts its texts with BOS under `rule` (reads the header only)."""
    return uses_bos(rule, read_gguf_info(gguf).add_bos)
