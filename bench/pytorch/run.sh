#!/usr/bin/env bash
# Runs the PyTorch + PEFT LoRA reference benchmark (bench/pytorch/train_lora.py)
# in a private virtual environment, creating that environment on first use.
#
#   bash bench/pytorch/run.sh [train_lora.py arguments...]
#   bash bench/pytorch/run.sh embed [embed_efficientnet.py arguments...]
#
# The venv (bench/pytorch/venv.sh bench) lives in
# ${XDG_CACHE_HOME:-$HOME/.cache}/hearth/pytorch-bench-venv (override with
# HEARTH_PYTORCH_VENV) and is reused as long as the hash of the requirement
# files and the Python version match its stamp file; otherwise it is rebuilt.
# Setup output goes to stderr; stdout carries only the benchmark's output.
# Set HEARTH_PYTHON to pick the interpreter (default python3).
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
PY="$(bash "$SCRIPT_DIR/venv.sh" bench)"

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
if [[ "${1:-}" == "embed" ]]; then
    shift
    exec "$PY" "$SCRIPT_DIR/embed_efficientnet.py" "$@"
fi
exec "$PY" "$SCRIPT_DIR/train_lora.py" "$@"
