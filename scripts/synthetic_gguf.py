"""Write a GGUF with the shape of a real model, random weights and a made-up vocabulary.

Its scores mean nothing; its speed is the real model's (the same matrices, the same vocabulary
size). It loads in llama.cpp like a Llama checkpoint and scores with `srt score --student PATH`.

    .venv/bin/python scripts/synthetic_gguf.py tiny /tmp/tiny.gguf
    python3 scripts/synthetic_gguf.py 8b /data/llama8b-f16.gguf --type f16

Presets: tiny (tests), 1b (Llama-3.2-1B shape), 8b (Llama-3-8B: 32 layers, hidden 4096,
intermediate 14336, 32 heads, 8 KV heads, 128,256 tokens), gemma270m (Gemma-3-270M: the gemma3
architecture, 18 layers, hidden 640, 262,144 tokens; the real file cannot travel to the GPU
machine). Types: f16, q8_0.

The file is written tensor by tensor, each in chunks: an 8B file (16 GB in F16) never sits in
memory. The weights repeat one random block (drawing 8 billion numbers would take minutes and buy
nothing: speed does not depend on the values). Needs the `gguf` package (ggml's own, from PyPI),
a development dependency only.

The vocabulary is GPT-2-style byte-level BPE: the 256 byte tokens, merges for letter pairs and
space-letter(-letter) runs (about 2 characters per token on English), then unreachable filler
tokens up to the preset's size, then the Llama-3 control tokens as BOS and EOS.
"""

from __future__ import annotations

import argparse
import string
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_CHUNK = 64 << 20  # bytes written per call
_BLOCK_VALUES = 1 << 20  # the random values that repeat
_Q8_BLOCK = 32  # values per Q8_0 block: an f16 scale and 32 int8
_Q8_BYTES = 34


@dataclass(frozen=True)
class Shape:
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    n_vocab: int
    n_ctx: int
    rope_base: float
    tied: bool  # the output matrix is the embedding's (Llama-3.2-1B); else a tensor of its own
    arch: str = "llama"
    head_dim: int = 0  # 0: n_embd / n_head
    sliding_window: int = 0  # gemma3 only

    @property
    def head(self) -> int:
        return self.head_dim or self.n_embd // self.n_head

    @property
    def n_params(self) -> int:
        """Parameters of the matrices a token passes through (embedding rows are looked up)."""
        q = self.n_head * self.head
        kv = self.n_head_kv * self.head
        per_layer = 2 * self.n_embd * q + 2 * self.n_embd * kv + 3 * self.n_embd * self.n_ff
        return self.n_layer * per_layer + self.n_vocab * self.n_embd


PRESETS = {
    "tiny": Shape(2, 64, 128, 4, 2, 2048, 2048, 10000.0, False),
    "1b": Shape(16, 2048, 8192, 32, 8, 128256, 8192, 500000.0, True),
    "8b": Shape(32, 4096, 14336, 32, 8, 128256, 8192, 500000.0, False),
    "gemma270m": Shape(18, 640, 2048, 4, 1, 262144, 32768, 1e6, True, "gemma3", 256, 512),
}


def byte_alphabet() -> dict[int, str]:
    """GPT-2's reversible map of the 256 bytes to printable characters (byte-level BPE)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def vocabulary(n_vocab: int) -> tuple[list[str], list[int], list[str], int, int]:
    """(tokens, token types, merges, bos id, eos id) of a made-up byte-level BPE vocabulary."""
    alphabet = byte_alphabet()
    space = alphabet[ord(" ")]
    tokens = [alphabet[b] for b in range(256)]
    merges: list[str] = []
    letters = string.ascii_lowercase
    for a in letters:
        for b in letters:
            merges.append(f"{a} {b}")
            tokens.append(a + b)
    for a in letters:
        merges.append(f"{space} {a}")
        tokens.append(space + a)
    for a in letters:
        for b in letters:
            merges.append(f"{space}{a} {b}")
            tokens.append(space + a + b)
    specials = ["<|begin_of_text|>", "<|end_of_text|>"]
    filler = n_vocab - len(tokens) - len(specials)
    if filler < 0:
        raise SystemExit(f"a vocabulary of {n_vocab} is too small for {len(tokens)} tokens")
    tokens += [f"<unused_{i}>" for i in range(filler)]
    types = [1] * (len(tokens)) + [3] * len(specials)  # NORMAL, CONTROL
    tokens += specials
    return tokens, types, merges, n_vocab - 2, n_vocab - 1


def _f16_block(rng: np.random.Generator, scale: float) -> bytes:
    return (
        (rng.standard_normal(_BLOCK_VALUES, dtype=np.float32) * scale).astype(np.float16).tobytes()
    )


def _q8_block(rng: np.random.Generator, scale: float) -> bytes:
    """Q8_0 blocks of random values, written here (an f16 scale, then 32 signed bytes)."""
    values = rng.standard_normal((_BLOCK_VALUES // _Q8_BLOCK, _Q8_BLOCK), dtype=np.float32) * scale
    amax = np.abs(values).max(axis=1, keepdims=True)
    d = amax / 127.0
    q = np.round(values / np.where(d == 0, 1, d)).astype(np.int8)
    out = np.empty((len(values), _Q8_BYTES), dtype=np.uint8)
    out[:, :2] = d.astype(np.float16).view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q.view(np.uint8)
    return out.tobytes()


def _repeated(block: bytes) -> memoryview:
    """The block repeated to about _CHUNK bytes (made once per block, sliced per write)."""
    return memoryview(block * max(1, _CHUNK // len(block)))


def _write_repeating(fout: Any, chunk: memoryview, nbytes: int) -> None:
    """nbytes of the repeated block, written in chunks."""
    left = nbytes
    while left > 0:
        piece = chunk[: min(left, len(chunk))]
        fout.write(piece)
        left -= len(piece)


def write(preset: str, path: Path, kind: str, seed: int = 0) -> Path:
    """Write the synthetic model; returns its path."""
    import gguf

    shape = PRESETS[preset]
    rng = np.random.default_rng(seed)
    qtype = gguf.GGMLQuantizationType.F16 if kind == "f16" else gguf.GGMLQuantizationType.Q8_0
    file_type = gguf.LlamaFileType.MOSTLY_F16 if kind == "f16" else gguf.LlamaFileType.MOSTLY_Q8_0
    head = shape.head
    q = shape.n_head * head
    kv = shape.n_head_kv * head
    gemma = shape.arch == "gemma3"

    writer = gguf.GGUFWriter(str(path), shape.arch)
    writer.add_name(f"srt-local synthetic {preset} ({kind})")
    writer.add_context_length(shape.n_ctx)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(shape.n_layer)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head_kv)
    writer.add_rope_freq_base(shape.rope_base)
    writer.add_layer_norm_rms_eps(1e-6 if gemma else 1e-5)
    if gemma:
        writer.add_key_length(head)
        writer.add_value_length(head)
        writer.add_sliding_window(shape.sliding_window)
    else:
        writer.add_rope_dimension_count(head)
    writer.add_vocab_size(shape.n_vocab)
    writer.add_file_type(int(file_type))
    tokens, types, merges, bos, eos = vocabulary(shape.n_vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("llama-bpe")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(bos)
    writer.add_eos_token_id(eos)
    writer.add_add_bos_token(True)

    # (name, numpy-order shape, quantized?): norms stay F32, as llama.cpp's converters write them.
    tensors: list[tuple[str, tuple[int, ...], bool]] = [
        ("token_embd.weight", (shape.n_vocab, shape.n_embd), True)
    ]
    for i in range(shape.n_layer):
        b = f"blk.{i}."
        tensors += [
            (b + "attn_norm.weight", (shape.n_embd,), False),
            (b + "attn_q.weight", (q, shape.n_embd), True),
            (b + "attn_k.weight", (kv, shape.n_embd), True),
            (b + "attn_v.weight", (kv, shape.n_embd), True),
            (b + "attn_output.weight", (shape.n_embd, q), True),
            (b + "ffn_norm.weight", (shape.n_embd,), False),
            (b + "ffn_gate.weight", (shape.n_ff, shape.n_embd), True),
            (b + "ffn_up.weight", (shape.n_ff, shape.n_embd), True),
            (b + "ffn_down.weight", (shape.n_embd, shape.n_ff), True),
        ]
        if gemma:
            tensors += [
                (b + "attn_q_norm.weight", (head,), False),
                (b + "attn_k_norm.weight", (head,), False),
                (b + "post_attention_norm.weight", (shape.n_embd,), False),
                (b + "post_ffw_norm.weight", (shape.n_embd,), False),
            ]
    tensors.append(("output_norm.weight", (shape.n_embd,), False))
    if not shape.tied:
        tensors.append(("output.weight", (shape.n_vocab, shape.n_embd), True))

    def nbytes(dims: tuple[int, ...], quantized: bool) -> int:
        n = int(np.prod(dims))
        if not quantized:
            return 4 * n
        return 2 * n if kind == "f16" else n // _Q8_BLOCK * _Q8_BYTES

    for name, dims, quantized in tensors:
        if quantized:
            # The writer takes byte shapes for quantized types: the last dimension in bytes.
            size = nbytes(dims, True)
            byte_dims = (*dims[:-1], size // int(np.prod(dims[:-1])))
            writer.add_tensor_info(name, byte_dims, np.dtype(np.uint8), size, raw_dtype=qtype)
        else:
            writer.add_tensor_info(name, dims, np.dtype(np.float32), nbytes(dims, False))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()

    scale = 0.02
    block = _repeated(_f16_block(rng, scale) if kind == "f16" else _q8_block(rng, scale))
    ones = _repeated(np.ones(_BLOCK_VALUES, dtype=np.float32).tobytes())
    assert writer.fout is not None
    fout = writer.fout[0]
    align = writer.data_alignment
    for _name, dims, quantized in tensors:
        fout.write(b"\0" * (-fout.tell() % align))
        _write_repeating(fout, block if quantized else ones, nbytes(dims, quantized))
    writer.close()
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("preset", choices=sorted(PRESETS))
    parser.add_argument("path", type=Path)
    parser.add_argument("--type", dest="kind", choices=("f16", "q8_0"), default="f16")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    write(args.preset, args.path, args.kind, args.seed)
    size = args.path.stat().st_size
    print(
        f"{args.path}: {args.preset} {args.kind}, {PRESETS[args.preset].n_params / 1e9:.2f} B "
        f"matrix parameters, {size / 1e9:.2f} GB in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
