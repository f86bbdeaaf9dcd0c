"""Cut the llama-cpp-python sdist down to what a CPU or CUDA build needs (< 60 MiB).

The GPU machine reaches no package index, so the source travels with the call (64 MiB at most).
The sdist is 217 MiB unpacked: mostly test vocabularies, docs, examples and other backends.

    .venv/bin/pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d /tmp/x
    .venv/bin/python scripts/trim_llama_source.py /tmp/x/llama_cpp_python-0.3.36.tar.gz .llama-src

The tree keeps llama_cpp/ (the Python package), the build files, and from llama.cpp: src, include,
common, vendor, cmake, ggml (CPU and CUDA backends only) and tools/mtmd (the package's CMake adds
it unless LLAVA_BUILD=OFF). It builds with `pip wheel --no-build-isolation` (scripts/device_build.sh).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tarfile
from pathlib import Path, PurePosixPath

# Top-level parts of the sdist that no build reads.
# The sdist carries llama.cpp's git history (38 MiB): the build only asks git for a commit id
# and does without.
_DROP_TOP = {"docs", "examples", "tests", "docker", ".github", "scripts", ".git"}
# Parts of vendor/llama.cpp that no build of the library (tests, examples, tools off) reads.
_DROP_LLAMA = {
    "models",
    "docs",
    "media",
    "tests",
    "benches",
    "examples",
    "gguf-py",
    "conversion",
    "scripts",
    "app",
    "pocs",
    "ci",
    "skills",
    "requirements",
    "grammars",
    ".devops",
    ".github",
    ".git",
}
_KEEP_TOOLS = {"mtmd", "CMakeLists.txt"}
_KEEP_BACKENDS = {"ggml-cpu", "ggml-cuda"}  # ggml/src/ggml-* directories kept


def keep(path: PurePosixPath) -> bool:
    """Whether a file of the sdist (its path below the sdist's root folder) goes in the tree."""
    parts = path.parts
    if not parts:
        return True
    if parts[0] in _DROP_TOP:
        return False
    if parts[:2] != ("vendor", "llama.cpp") or len(parts) < 3:
        return True
    rest = parts[2:]
    if rest[0] in _DROP_LLAMA:
        return False
    if rest[0] == "tools":
        return len(rest) == 1 or rest[1] in _KEEP_TOOLS
    if rest[:2] == ("ggml", "src") and len(rest) > 3 and rest[2].startswith("ggml-"):
        return rest[2] in _KEEP_BACKENDS
    return True


def trim(sdist: Path, dest: Path) -> int:
    """Extract the kept files of `sdist` into `dest` (replaced); returns their total bytes."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    total = 0
    with tarfile.open(sdist) as tar:
        members = []
        for member in tar.getmembers():
            full = PurePosixPath(member.name)
            if len(full.parts) < 2 or not (member.isfile() or member.isdir()):
                continue
            inner = PurePosixPath(*full.parts[1:])
            if keep(inner):
                member.name = str(inner)
                members.append(member)
                total += member.size if member.isfile() else 0
        tar.extractall(dest, members=members, filter="data")
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sdist", type=Path, help="llama_cpp_python-0.3.36.tar.gz")
    parser.add_argument("dest", type=Path, help="the trimmed tree (replaced)")
    args = parser.parse_args(argv)
    total = trim(args.sdist, args.dest)
    print(f"{args.dest}: {total / 2**20:.1f} MiB", file=sys.stderr)
    return 0 if total < 60 * 2**20 else 1


if __name__ == "__main__":
    raise SystemExit(main())
