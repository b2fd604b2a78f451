#!/usr/bin/env bash
# Runs the llama.cpp reference for `hearth bench generate` (generate.py) in a
# private virtual environment under this folder (.venv, git-ignored),
# creating it on first use: llama-cpp-python is built from source with a CPU
# build of llama.cpp for this machine (a few minutes per core).
#
#   bash bench/llamacpp/run.sh [generate.py arguments...]
#   bash bench/llamacpp/run.sh --setup-only
#
# The venv is reused while the hashes of requirements.txt, build.txt and
# CMAKE_ARGS and the Python version match its stamp file; otherwise it is
# rebuilt. HEARTH_LLAMACPP_VENV puts it elsewhere; HEARTH_PYTHON picks the
# interpreter (default python3). Setup output goes to stderr; stdout carries
# only generate.py's single JSON line.
set -euo pipefail

die() {
    echo "hearth llama.cpp bench: error: $*" >&2
    exit 1
}

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REQS="$SCRIPT_DIR/requirements.txt"
BUILD="$SCRIPT_DIR/build.txt"
GENERATE="$SCRIPT_DIR/generate.py"
for f in "$REQS" "$BUILD" "$GENERATE"; do [[ -f "$f" ]] || die "missing $f"; done

PYTHON="${HEARTH_PYTHON:-python3}"
command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found (set HEARTH_PYTHON to a Python >= 3.10)"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
    || die "$("$PYTHON" -V 2>&1) is too old: Python >= 3.10 is required (set HEARTH_PYTHON)"
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null \
    || die "$PYTHON lacks the venv/ensurepip modules (on Debian: apt-get install python3-venv)"
command -v c++ >/dev/null 2>&1 || die "no C++ compiler (on Debian: apt-get install build-essential)"

# A CPU build for this machine's instruction set: the fairest llama.cpp.
# Without AMX: in a virtual machine whose CPU reports AMX (as this one's
# does), llama.cpp's AMX matrix path crashed every batch of more than one
# token (SIGSEGV in llama_decode, llama-cpp-python 0.3.36); the AVX-512 and
# weight-repacking paths stay on. GCC's explicit -mno-* flags win over the
# AMX that -march=native implies. The build skips pip's wheel cache, which
# would otherwise hand back a wheel built with other flags.
NO_AMX_FLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
CMAKE_ARGS_PINNED="-DGGML_NATIVE=ON -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_BLAS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
VENV="${HEARTH_LLAMACPP_VENV:-$SCRIPT_DIR/.venv}"
STAMP="$VENV/.hearth-requirements.stamp"
WANT="$(cat "$REQS" "$BUILD" <(echo "$CMAKE_ARGS_PINNED $NO_AMX_FLAGS") | sha256sum | cut -d' ' -f1) python=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

venv_ok() {
    [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP" 2>/dev/null)" == "$WANT" ]]
}

setup_venv() {
    echo "hearth llama.cpp bench: creating $VENV (one time; builds llama.cpp from source)" >&2
    local t0=$SECONDS
    rm -rf -- "$VENV"
    "$PYTHON" -m venv "$VENV" >&2 || die "could not create the virtual environment at $VENV"
    local pip=("$VENV/bin/python" -m pip install --progress-bar off --no-deps)
    PIP_DISABLE_PIP_VERSION_CHECK=1 "${pip[@]}" --only-binary=:all: -r "$BUILD" >&2 \
        || die "pip install -r $BUILD failed (see above)"
    CFLAGS="$NO_AMX_FLAGS" CXXFLAGS="$NO_AMX_FLAGS" \
        CMAKE_ARGS="$CMAKE_ARGS_PINNED" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
        PIP_DISABLE_PIP_VERSION_CHECK=1 "${pip[@]}" --no-build-isolation --no-cache-dir \
        --no-binary llama-cpp-python -r "$REQS" >&2 \
        || die "pip install -r $REQS failed (see above); $VENV is incomplete and will be rebuilt on the next run"
    "$VENV/bin/python" -c 'import llama_cpp; print("llama-cpp-python", llama_cpp.__version__)' >&2 \
        || die "the new environment at $VENV cannot import llama_cpp"
    printf '%s\n' "$WANT" > "$STAMP"
    echo "hearth llama.cpp bench: environment ready in $((SECONDS - t0)) s ($(du -sh "$VENV" 2>/dev/null | cut -f1))" >&2
}

if ! venv_ok; then
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$VENV.lock" || die "cannot open lock file $VENV.lock"
        flock 9
        venv_ok || setup_venv
        flock -u 9
        exec 9>&-
    else
        setup_venv
    fi
fi

[[ "${1:-}" == "--setup-only" ]] && exit 0
export PYTHONUNBUFFERED=1
exec "$VENV/bin/python" "$GENERATE" "$@"
