#!/usr/bin/env bash
# Prepares, on a machine without a GPU, everything bench/device-check.sh needs on the GPU machine
# (which has no Rust toolchain and no network): a CUDA build of Pentimento for the H100/H200
# (sm_90), stripped and xz-compressed into .carry/, and diffusers' wheel into .whl/. Both folders
# are ignored by git; name them in the device tool's `carry`.
#
#   bench/device-prepare.sh [CUDA_TOOLCHAIN_DIR]     # default ~/cuda13 (made if missing)
#
# Then, on the GPU machine, from the repository root:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#   xz -dc .carry/pentimento.xz > /tmp/pentimento && chmod +x /tmp/pentimento
#   NVP=$(python3 -c "import nvidia; print(' '.join(nvidia.__path__))")
#   export LD_LIBRARY_PATH=$(find $NVP -name 'lib*.so*' -printf '%h\n' | sort -u | tr '\n' ':')
#   PYTHONPATH=/tmp/site bench/device-check.sh /tmp/pentimento $OUT
set -euo pipefail
cd "$(dirname "$0")/.."
toolchain=${1:-$HOME/cuda13}
[ -f "$toolchain/env.sh" ] || dist/cuda/toolchain-from-wheels.sh "$toolchain"
# shellcheck disable=SC1091
source "$toolchain/env.sh"
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
target=${CARGO_TARGET_DIR:-target}/cuda
CARGO_TARGET_DIR=$target cargo build --locked --release --features cuda
mkdir -p .carry .whl
strip -o .carry/pentimento "$target/release/pentimento"
xz -9 -T2 -f .carry/pentimento
python3 -m pip download --no-deps --only-binary=:all: -d .whl "diffusers==0.42.1"
ls -la .carry .whl
