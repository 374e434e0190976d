#!/usr/bin/env bash
# Create the virtual environment and install scadm with pinned versions.
#
# torch goes in first, on its own, so that nothing later pulls a different build:
#   1. a local CPU wheel that pip is configured to find (offline machines), else
#   2. on a machine with an NVIDIA driver, the default build from PyPI, else
#   3. the CPU-only build from the PyTorch CPU index (never the multi-GB CUDA build).
# Everything else is installed against constraints.txt, then `pip check` verifies the set.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=$(grep -E '^torch==' constraints.txt)

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    # the local wheel alone (--no-deps: its dependencies come from the index next)
    if "${PIP[@]}" install -q --no-index --no-deps "$TORCH_SPEC" >/dev/null 2>&1; then
        "${PIP[@]}" install -q "$TORCH_SPEC"
        echo "setup: installed $TORCH_SPEC from a local wheel"
    elif command -v nvidia-smi >/dev/null 2>&1; then
        "${PIP[@]}" install -q "$TORCH_SPEC"
    else
        "${PIP[@]}" install -q "$TORCH_SPEC" --index-url https://download.pytorch.org/whl/cpu
    fi
fi
"${PIP[@]}" install -q -c constraints.txt -e ".[test,app]"
"${PIP[@]}" check
"$PY" -c "import torch, scadm; print(f'setup: scadm {scadm.__version__}, torch {torch.__version__}')"
