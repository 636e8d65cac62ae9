#!/usr/bin/env bash
# Create ./.venv and install Briefbot into it. `--dev` adds the test tools.
# Torch goes in first, pinned to the CPU build, so pip never pulls a multi-GB CUDA build for it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${BRIEFBOT_TORCH_SPEC:-torch==2.13.0}"
extras=""
if [ "${1:-}" = "--dev" ]; then extras="[dev]"; fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  # On machines without a local wheel, add: --index-url https://download.pytorch.org/whl/cpu
  .venv/bin/pip install --quiet ${BRIEFBOT_TORCH_PIP_ARGS:-} "$TORCH_SPEC"
fi
.venv/bin/pip install --quiet -e ".${extras}"
echo "installed: $(.venv/bin/briefbot --help >/dev/null && echo briefbot) in $(pwd)/.venv" >&2
