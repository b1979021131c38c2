#!/usr/bin/env bash
# A CUDA 13.0 build toolchain for `cargo build --features cuda` on a machine without the CUDA
# toolkit or a GPU (a CI runner, say), from NVIDIA's pip wheels:
#
#   dist/cuda/toolchain-from-wheels.sh ~/cuda13
#   source ~/cuda13/env.sh        # CUDA_ROOT, PATH, LIBRARY_PATH, CUDA_COMPUTE_CAP (default 90)
#   cargo build --release --features cuda
#
# The driver library (libcuda) comes with the NVIDIA driver, not with any wheel; cudarc links
# against it at build time, so this makes a link-only stub with the driver's soname. Where the
# binary runs, the real driver's libcuda.so.1 is loaded, with the CUDA 13 runtime, cuBLAS and
# cuRAND libraries (the same wheels, or a CUDA 13 install).
set -euo pipefail

dest=${1:?usage: toolchain-from-wheels.sh DIR}
python=${PYTHON:-python3}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)

"$python" -m pip download --no-deps --only-binary=:all: -d "$dest/wheels" \
    nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 \
    nvidia-cuda-runtime==13.0.88 nvidia-cuda-cccl==13.0.85 nvidia-cublas==13.0.2.14 \
    nvidia-curand==10.4.0.35 nvidia-cuda-nvrtc==13.0.88
for wheel in "$dest"/wheels/*.whl; do
    "$python" -m zipfile -e "$wheel" "$dest/site"
done
cuda="$dest/site/nvidia/cu13"
chmod +x "$cuda"/bin/* "$dest"/site/nvidia/cu13/nvvm/bin/* 2>/dev/null || true

# The unversioned names the linker looks for.
(
    cd "$cuda/lib"
    for lib in cublas cublasLt cudart nvrtc; do ln -sf "lib$lib.so.13" "lib$lib.so"; done
    ln -sf libcurand.so.10 libcurand.so
)
ln -sfn lib "$cuda/lib64"

# The stub: every driver entry point cudarc declares, each returning an error if ever called.
cudarc_sys=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.*/src/driver/sys/mod.rs 2>/dev/null | tail -1 || true)
if [ -z "$cudarc_sys" ]; then
    echo "cudarc's sources are not in the cargo registry yet: run 'cargo fetch' first" >&2
    exit 1
fi
mkdir -p "$cuda/lib/stubs"
grep -hoE '^pub unsafe fn cu[A-Za-z0-9_]+' "$cudarc_sys" | awk '{print $4}' | sort -u |
    awk '{print "int " $1 "(void) { return 999; }"}' > "$dest/libcuda_stub.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$cuda/lib/stubs/libcuda.so" "$dest/libcuda_stub.c"

cat > "$dest/env.sh" <<ENV
export CUDA_ROOT="$cuda" CUDA_HOME="$cuda" CUDA_PATH="$cuda"
export PATH="$cuda/bin:\$PATH"
export LIBRARY_PATH="$cuda/lib/stubs:$cuda/lib:\${LIBRARY_PATH:-}"
export CUDA_COMPUTE_CAP=\${CUDA_COMPUTE_CAP:-90}
ENV
echo "toolchain in $cuda; source $dest/env.sh before cargo build --features cuda"
