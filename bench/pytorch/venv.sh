#!/usr/bin/env bash
# Makes (once) and checks a pinned PyTorch virtual environment, and prints
# its Python interpreter's path on stdout. Setup messages go to stderr.
#
#   bash bench/pytorch/venv.sh bench   # torch + transformers + peft + gguf (requirements.txt):
#                                      # the references of `hearth bench train|embed`
#   bash bench/pytorch/venv.sh torch   # torch alone (requirements-torch.txt): the
#                                      # PyTorch cross-checks of the tests (scripts/test.sh)
#
# Where: ${XDG_CACHE_HOME:-$HOME/.cache}/hearth/pytorch-bench-venv (override
# with HEARTH_PYTORCH_VENV) and .../hearth/torch-venv (HEARTH_TORCH_VENV).
# A venv is reused while the sha256 of its requirement files and the Python
# version match its stamp file; otherwise it is rebuilt. HEARTH_PYTHON picks
# the interpreter that creates it (default python3, 3.10 or newer).
set -euo pipefail

die() {
    echo "hearth pytorch venv: error: $*" >&2
    exit 1
}

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/hearth"
case "${1:-}" in
    bench)
        VENV="${HEARTH_PYTORCH_VENV:-$CACHE_ROOT/pytorch-bench-venv}"
        REQS="$SCRIPT_DIR/requirements.txt"
        FILES=("$SCRIPT_DIR/requirements-torch.txt" "$REQS")
        CHECK='import torch, transformers, peft, gguf; torch.ones(2, 2) @ torch.ones(2, 2)'
        SIZE="downloads ~3 GB of wheels, installs ~4.3 GB"
        ;;
    torch)
        VENV="${HEARTH_TORCH_VENV:-$CACHE_ROOT/torch-venv}"
        REQS="$SCRIPT_DIR/requirements-torch.txt"
        FILES=("$REQS")
        CHECK='import torch; torch.ones(2, 2) @ torch.ones(2, 2)'
        SIZE="downloads ~3 GB of wheels, installs ~4.2 GB"
        ;;
    *) die "usage: venv.sh bench|torch" ;;
esac
for file in "${FILES[@]}"; do
    [[ -f "$file" ]] || die "missing $file"
done

PYTHON="${HEARTH_PYTHON:-python3}"
command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found (set HEARTH_PYTHON to a Python >= 3.10)"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
    || die "$("$PYTHON" -V 2>&1) is too old: Python >= 3.10 is required (set HEARTH_PYTHON)"
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null \
    || die "$PYTHON lacks the venv/ensurepip modules (on Debian: apt-get install python3-venv)"

STAMP="$VENV/.hearth-requirements.stamp"
REQ_HASH="$(cat "${FILES[@]}" | "$PYTHON" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
WANT="requirements-sha256=$REQ_HASH python=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

venv_ok() {
    [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP" 2>/dev/null)" == "$WANT" ]]
}

setup_venv() {
    echo "hearth pytorch venv: creating $VENV (one time; $SIZE)" >&2
    local t0=$SECONDS
    rm -rf -- "$VENV"
    "$PYTHON" -m venv "$VENV" >&2 || die "could not create the virtual environment at $VENV"
    # Full pinned closure, no resolver: see the comment at the top of requirements-torch.txt.
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install \
        --no-deps --only-binary=:all: --progress-bar off -r "$REQS" >&2 \
        || die "pip install -r $REQS failed (see the output above); the venv at $VENV is incomplete and will be rebuilt on the next run"
    "$VENV/bin/python" -c "$CHECK" >&2 \
        || die "the new environment at $VENV cannot run: $CHECK"
    printf '%s\n' "$WANT" > "$STAMP"
    echo "hearth pytorch venv: $VENV ready in $((SECONDS - t0)) s ($(du -sh "$VENV" 2>/dev/null | cut -f1))" >&2
}

if ! venv_ok; then
    mkdir -p -- "$(dirname -- "$VENV")" || die "cannot create $(dirname -- "$VENV")"
    if command -v flock >/dev/null 2>&1; then
        # Serialise concurrent first runs; re-check after taking the lock.
        exec 9>"$VENV.lock" || die "cannot open lock file $VENV.lock"
        flock 9
        venv_ok || setup_venv
        flock -u 9
        exec 9>&-
    else
        setup_venv
    fi
fi
printf '%s\n' "$VENV/bin/python"
