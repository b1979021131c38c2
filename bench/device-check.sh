#!/usr/bin/env bash
# The GPU check, in one run on the GPU machine (issue "The GPU path, measured"):
#
#   bench/device-check.sh PENTIMENTO_BINARY OUT_DIR
#
# 1. Parity on the fixtures: the same jobs on the CPU in f32 (the path the test suite proves
#    against diffusers) and on CUDA in f32 and f16; every picture compared pixel by pixel
#    (f32 within 1/255, f16 within 2/255). A failure is said and the run goes on.
# 2. `bench/compare_diffusers.py --device cuda`: SD 1.5 at 512² and SD 2.1 at 768² in f16,
#    Pentimento and diffusers eager in the same run — text encoder, UNet step (CFG), VAE decode
#    and encode, a 20-step text-to-image — with the GPU's memory in use sampled by nvidia-smi.
#
# Everything lands in OUT_DIR (logs, JSON, pictures, summary.md). Needs Python 3 with PyTorch,
# Pillow and numpy, and diffusers (carry its wheel: see ../shared/notes/cuda-build.md).
# Made on a machine with no GPU; written to be run once with time left for a rerun. A dry run of
# the script itself where there is no GPU: GPU=cpu SKIP_BENCH=1 bench/device-check.sh BIN OUT.
set -uo pipefail
gpu=${GPU:-cuda}
usage="usage: device-check.sh PENTIMENTO_BINARY OUT_DIR"
bin=${1:?$usage}
out=${2:?$usage}
here=$(cd "$(dirname "$0")/.." && pwd)
fixtures=$here/tests/fixtures
python=${PYTHON:-python3}
"$python" -c "import numpy, PIL" 2>/dev/null ||
    { echo "device-check.sh: $python needs numpy and Pillow (set PYTHON)" >&2; exit 2; }
mkdir -p "$out/parity"
summary=$out/summary.md
failures=0
note() { echo "$*" | tee -a "$summary"; }

note "# Device check, $(date -u +%FT%TZ)"
note ""
note "- binary: $("$bin" --version 2>&1)"
note "- GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -1)"
note ""

# GPU memory in use, every 100 ms, for the whole run (the peak per phase is read from it).
nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader,nounits -lms 100 \
    > "$out/gpu-memory.csv" 2>/dev/null &
smi=$!
trap 'kill $smi 2>/dev/null' EXIT
phase() { echo "$(date -u +%FT%T.%3N) $1" >> "$out/phases.txt"; }

# --- 1. Parity -------------------------------------------------------------------------------
# The samplers cover the ancestral (noise drawn per step) and second-order paths; img2img and
# both kinds of inpainting cover the encoder and the masks.
parity() {
    local name=$1 model=$2
    shift 2
    local ok=1 device dtype
    for variant in "cpu f32" "$gpu f32" "$gpu f16"; do
        read -r device dtype <<< "$variant"
        "$bin" generate --model "$fixtures/$model" --prompt "a red bicycle leaning on a wall" \
            --negative-prompt "blurry" --seed 7 --width 128 --height 128 "$@" \
            --device "$device" --dtype "$dtype" --out "$out/parity/$name-${variant/ /-}.png" \
            > "$out/parity/$name-${variant/ /-}.log" 2>&1 || ok=0
    done
    local steps f32 f16
    steps=$("$python" - "$out/parity/$name" "$gpu" <<'PY'
import sys
import numpy as np
from PIL import Image
base, gpu = sys.argv[1], sys.argv[2]
ref = np.asarray(Image.open(f"{base}-cpu-f32.png").convert("RGB"), dtype=np.int16)
out = []
for v in (f"{gpu}-f32", f"{gpu}-f16"):
    try:
        got = np.asarray(Image.open(f"{base}-{v}.png").convert("RGB"), dtype=np.int16)
        out.append(str(int(np.abs(got - ref).max())) if got.shape == ref.shape else "shape")
    except OSError:  # no picture: its generate log says why
        out.append("missing")
print(" ".join(out))
PY
)
    read -r f32 f16 <<< "${steps:-missing missing}"
    local verdict=pass
    if [ "$ok" = 0 ] || ! [[ "$f32" =~ ^[0-9]+$ && "$f16" =~ ^[0-9]+$ ]] ||
        [ "$f32" -gt 1 ] || [ "$f16" -gt 2 ]; then
        verdict=FAIL
        failures=$((failures + 1))
    fi
    note "| $name | $f32 | $f16 | $verdict |"
}
phase parity
note "## Parity on the fixtures (CPU f32 against CUDA; largest difference in 1/255 steps)"
note ""
note "| case | CUDA f32 | CUDA f16 | verdict |"
note "| --- | --- | --- | --- |"
sd15=tiny-sd15.safetensors
parity txt2img-euler $sd15 --sampler Euler --steps 8
parity txt2img-euler-a $sd15 --sampler "Euler a" --steps 8
parity txt2img-dpmpp-2m-karras $sd15 --sampler "DPM++ 2M Karras" --steps 8
parity txt2img-heun $sd15 --sampler Heun --steps 6
parity txt2img-ddim $sd15 --sampler DDIM --steps 8
parity txt2img-unipc $sd15 --sampler UniPC --steps 8
parity img2img $sd15 --init-image "$fixtures/tiny-sd15-img2img.3-image.png" --strength 0.6 --steps 10
parity inpaint-9-channel tiny-sd15-inpainting.ckpt \
    --init-image "$fixtures/tiny-sd15-inpaint.2-image.png" \
    --mask "$fixtures/tiny-sd15-inpaint.2-mask.png" --steps 8
parity inpaint-repaint $sd15 --init-image "$fixtures/tiny-sd15-inpaint.2-image.png" \
    --mask "$fixtures/tiny-sd15-inpaint.2-mask.png" --repaint-resample 2 --steps 8
note ""

# --- 2. Speed and memory against diffusers eager ---------------------------------------------
for run in "sd15 512" "sd21 768"; do
    [ "${SKIP_BENCH:-0}" = 1 ] && break
    read -r arch size <<< "$run"
    phase "bench-$arch-$size"
    PYTHONUNBUFFERED=1 "$python" "$here/bench/compare_diffusers.py" --pentimento "$bin" \
        --device "$gpu" --dtype f16 --arch "$arch" --size "$size" --iters 5 --steps 20 \
        --only text-encode,unet-step,vae-decode,vae-encode,txt2img \
        --json-out "$out/bench-$arch-$size.json" > "$out/bench-$arch-$size.log" 2>&1 ||
        { note "compare_diffusers.py $arch $size failed: see bench-$arch-$size.log"; failures=$((failures + 1)); }
done
phase end
kill $smi 2>/dev/null

# Peak GPU memory per phase, from the samples.
"$python" - "$out" <<'PY' | tee -a "$summary"
import sys, datetime, pathlib
out = pathlib.Path(sys.argv[1])
if not (out / "gpu-memory.csv").is_file() or not (out / "gpu-memory.csv").stat().st_size:
    print("## Peak GPU memory: no nvidia-smi samples\n")
    sys.exit()
def t(s):
    return datetime.datetime.fromisoformat(s.strip().replace("/", "-"))
phases = [(t(l.split(" ", 1)[0]), l.split(" ", 1)[1].strip())
          for l in (out / "phases.txt").read_text().splitlines()]
peaks = {}
for line in (out / "gpu-memory.csv").read_text().splitlines():
    try:
        stamp, used = line.split(",")
        when, mib = t(stamp), int(used)
    except ValueError:
        continue
    name = None
    for start, p in phases:
        if when >= start:
            name = p
    if name and name != "end":
        peaks[name] = max(peaks.get(name, 0), mib)
print("## Peak GPU memory in use (nvidia-smi, whole machine)\n")
for name, mib in peaks.items():
    print(f"- {name}: {mib} MiB")
print()
PY
for f in "$out"/bench-*.log; do
    note "## $(basename "$f" .log)"
    note '```'
    tail -n 30 "$f" | tee -a "$summary"
    note '```'
done
note ""
note "failures: $failures"
[ "$failures" = 0 ]
