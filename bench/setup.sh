#!/usr/bin/env bash
# Installs the side-by-side baseline into bench/.venv: PyTorch (CPU wheels unless CUDA=1),
# diffusers and transformers, at the versions RESULTS.md was measured with.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python3 -m venv "$here/.venv"
pip="$here/.venv/bin/pip"
"$pip" install --upgrade pip
if [ "${CUDA:-0}" = "1" ]; then
  "$pip" install torch
else
  "$pip" install torch --index-url https://download.pytorch.org/whl/cpu
fi
"$pip" install "diffusers==0.42.1" "transformers==5.24.0" accelerate
echo "ready: $here/.venv/bin/python $here/compare_diffusers.py --help"
