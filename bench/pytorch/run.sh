#!/usr/bin/env bash
# Runs the PyTorch + PEFT LoRA reference benchmark (bench/pytorch/train_lora.py)
# in a private virtual environment, creating that environment on first use.
#
#   bash bench/pytorch/run.sh [train_lora.py arguments...]
#   bash bench/pytorch/run.sh embed [embed_efficientnet.py arguments...]
#
# The venv lives in ${XDG_CACHE_HOME:-$HOME/.cache}/hearth/pytorch-bench-venv
# (override with HEARTH_PYTORCH_VENV) and is reused as long as the hash of
# requirements.txt and the Python version match its stamp file; otherwise it is
# rebuilt. Setup output goes to stderr; stdout carries only the benchmark's
# single JSON line. Set HEARTH_PYTHON to pick the interpreter (default python3).
set -euo pipefail

die() {
    echo "hearth pytorch bench: error: $*" >&2
    exit 1
}

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REQS="$SCRIPT_DIR/requirements.txt"
TRAIN="$SCRIPT_DIR/train_lora.py"
[[ -f "$REQS" ]] || die "missing $REQS"
[[ -f "$TRAIN" ]] || die "missing $TRAIN"

PYTHON="${HEARTH_PYTHON:-python3}"
command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found (set HEARTH_PYTHON to a Python >= 3.10)"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
    || die "$("$PYTHON" -V 2>&1) is too old: Python >= 3.10 is required (set HEARTH_PYTHON)"
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null \
    || die "$PYTHON lacks the venv/ensurepip modules (on Debian: apt-get install python3-venv)"

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/hearth"
VENV="${HEARTH_PYTORCH_VENV:-$CACHE_ROOT/pytorch-bench-venv}"
STAMP="$VENV/.hearth-requirements.stamp"

if command -v sha256sum >/dev/null 2>&1; then
    REQ_HASH="$(sha256sum "$REQS" | cut -d' ' -f1)"
else
    REQ_HASH="$("$PYTHON" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$REQS")"
fi
WANT="requirements-sha256=$REQ_HASH python=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

venv_ok() {
    [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP" 2>/dev/null)" == "$WANT" ]]
}

setup_venv() {
    echo "hearth pytorch bench: creating $VENV (one time; downloads ~3 GB of wheels, installs ~4.3 GB)" >&2
    local t0=$SECONDS
    rm -rf -- "$VENV"
    "$PYTHON" -m venv "$VENV" >&2 || die "could not create the virtual environment at $VENV"
    # Full pinned closure, no resolver: see the comment at the top of requirements.txt.
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install \
        --no-deps --only-binary=:all: --progress-bar off -r "$REQS" >&2 \
        || die "pip install -r $REQS failed (see the output above); the venv at $VENV is incomplete and will be rebuilt on the next run"
    "$VENV/bin/python" -c 'import torch, transformers, peft, gguf; torch.ones(2, 2) @ torch.ones(2, 2)' >&2 \
        || die "the new environment at $VENV cannot import torch/transformers/peft/gguf"
    printf '%s\n' "$WANT" > "$STAMP"
    echo "hearth pytorch bench: environment ready in $((SECONDS - t0)) s ($(du -sh "$VENV" 2>/dev/null | cut -f1))" >&2
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

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
if [[ "${1:-}" == "embed" ]]; then
    shift
    exec "$VENV/bin/python" "$SCRIPT_DIR/embed_efficientnet.py" "$@"
fi
exec "$VENV/bin/python" "$TRAIN" "$@"
