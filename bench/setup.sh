#!/usr/bin/env bash
# Installs the side-by-side baseline into bench/.venv: PyTorch (CPU wheels unless CUDA=1),
# diffusers and transformers, at the versions RESULTS.md was measured with.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python3 -m venv "$here/.venv"
pip="$here/.venv/bin/pip"
"$pip" install --upgrade pip
# PyTorch's own index has the small CPU wheels; a machine that reaches only the standard index
# (PyPI) gets PyPI's default wheel instead (larger, the same results on the CPU).
torch_index="${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
if [ "${CUDA:-0}" = "1" ]; then
  "$pip" install torch
elif "$pip" install --timeout 20 --retries 1 torch --index-url "$torch_index"; then
  :
else
  echo "setup.sh: $torch_index is out of reach; installing PyPI's default torch wheel" >&2
  "$pip" install torch
fi
"$pip" install "diffusers==0.42.1" "transformers==5.24.0" accelerate
echo "ready: $here/.venv/bin/python $here/compare_diffusers.py --help"
