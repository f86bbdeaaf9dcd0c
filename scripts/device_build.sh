#!/usr/bin/env bash
# Build llama-cpp-python 0.3.36 with CUDA for Hopper (sm_90) on the GPU machine, from the trimmed
# source tree (scripts/trim_llama_source.py), and install it with the carried wheels into a folder.
#   bash scripts/device_build.sh [SRC=.llama-src] [SITE=.device-site] [WHEELS=.whl]
# That machine reaches no index: the build uses its own cmake, ninja, nvcc and scikit-build-core
# (--no-build-isolation). Flash attention kernels are not built (the scorer never uses them; they
# are most of the CUDA build time), nor mtmd, NCCL, tests or tools. Rerun on a warm machine: it
# finds the build and returns at once.
set -euo pipefail
src=${1:-.llama-src}
site=${2:-.device-site}
wheels=${3:-.whl}
started=$(date +%s)
mkdir -p "$site"
if compgen -G "$wheels/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$site" "$wheels"/*.whl
fi
if PYTHONPATH="$site" python3 -c 'import llama_cpp, sys; sys.exit(0 if llama_cpp.llama_supports_gpu_offload() else 1)' 2>/dev/null; then
    echo "device_build: llama-cpp-python with CUDA already in $site" >&2
    exit 0
fi
nvcc=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
[ -n "$nvcc" ] || { echo "device_build: no nvcc on this machine" >&2; exit 1; }
export CUDACXX="$nvcc"
export CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_CUDA_FA=OFF \
-DGGML_CUDA_NCCL=OFF -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF \
-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF"
export CMAKE_BUILD_PARALLEL_LEVEL=$(nproc)
out=$(mktemp -d)
python3 -m pip wheel -q --no-deps --no-build-isolation "$src" -w "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$site" "$out"/llama_cpp_python-*.whl
PYTHONPATH="$site" python3 -c 'import llama_cpp; assert llama_cpp.llama_supports_gpu_offload(), "built without CUDA"'
echo "device_build: built in $(( $(date +%s) - started )) s" >&2
