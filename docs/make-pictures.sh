#!/usr/bin/env bash
# Makes every picture that docs/inpainting.md and docs/exploring.md show, into docs/pictures/.
#
#   docs/make-pictures.sh [PATH-TO-PENTIMENTO]
#
# PATH-TO-PENTIMENTO defaults to target/release/pentimento in the repository. Only the CLI
# (`generate`, `grid`, `preprocess`) and the tiny test models in tests/fixtures are used; the
# before-picture and its mask are drawn with ImageMagick's `convert`. The tiny models have
# random weights: what they regenerate is coloured noise. Every command below runs from the
# repository root, exactly as the guides print it (with `pentimento` for the binary).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ $# -ge 1 ]]; then
    # Relative to where the script was started, before we change directory.
    case "$1" in
        /*) BIN="$1" ;;
        *) BIN="$PWD/$1" ;;
    esac
else
    BIN="$ROOT/target/release/pentimento"
fi
if [[ ! -x "$BIN" ]]; then
    echo "make-pictures.sh: no pentimento binary at $BIN (build it with cargo build --release, or give its path)" >&2
    exit 1
fi
if ! command -v convert >/dev/null 2>&1; then
    echo "make-pictures.sh: ImageMagick's convert is needed to draw the before-picture" >&2
    exit 1
fi

cd "$ROOT"
OUT=docs/pictures
mkdir -p "$OUT"
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
START=$SECONDS

# Runs pentimento quietly; on failure shows its output and stops.
pentimento() {
    if ! "$BIN" "$@" >"$LOG" 2>&1; then
        echo "make-pictures.sh: failed: pentimento $*" >&2
        cat "$LOG" >&2
        exit 1
    fi
    grep '^wrote' "$LOG" || true
}

# --- Inputs --------------------------------------------------------------------------------

# The before-picture: a house, grass, sky and a sun, 128×128.
convert -size 128x128 xc:'#7ab8e8' \
    -fill '#5a9e3a' -draw 'rectangle 0,84 127,127' \
    -fill '#f4d03f' -draw 'circle 98,28 98,42' \
    -fill '#b03a2e' -draw 'rectangle 22,58 58,94' \
    -fill '#6e2c00' -draw 'polygon 16,58 40,36 64,58' \
    -fill '#fdfefe' -draw 'rectangle 34,74 46,94' \
    -define png:exclude-chunk=date,time PNG24:"$OUT/inpaint-before.png"
# The mask: white (regenerate) over the sun, black (keep) elsewhere.
convert -size 128x128 xc:black -fill white -draw 'circle 98,28 98,48' \
    -depth 8 -type Grayscale -define png:exclude-chunk=date,time PNG:"$OUT/inpaint-mask.png"
# The mask as the canvas shows it: pink (0.93, 0.25, 0.55) at half opacity where it is white,
# the formula of shaders/canvas.wgsl.
convert "$OUT/inpaint-before.png" \( -size 128x128 xc:'rgb(237,64,140)' \) \
    \( "$OUT/inpaint-mask.png" -evaluate multiply 0.5 \) -composite \
    -define png:exclude-chunk=date,time PNG24:"$OUT/inpaint-mask-overlay.png"
# The test fixtures' inpainting case (a colour gradient and a square mask).
cp tests/fixtures/tiny-sd15-inpaint.2-image.png "$OUT/inpaint-fixture-image.png"
cp tests/fixtures/tiny-sd15-inpaint.2-mask.png "$OUT/inpaint-fixture-mask.png"

# --- docs/inpainting.md --------------------------------------------------------------------

pentimento preprocess invert docs/pictures/inpaint-mask.png --out docs/pictures/inpaint-mask-inverted.png

pentimento generate --model tests/fixtures/tiny-sd15.safetensors --prompt "a full moon" --seed 5 --steps 4 \
    --init-image docs/pictures/inpaint-before.png --mask docs/pictures/inpaint-mask.png \
    --out docs/pictures/inpaint-after.png

pentimento generate --model tests/fixtures/tiny-sd15.safetensors --prompt "a village at night" --seed 5 --steps 4 \
    --init-image docs/pictures/inpaint-before.png --mask docs/pictures/inpaint-mask-inverted.png \
    --out docs/pictures/inpaint-inverted-after.png

for blur in 0 16; do
    pentimento generate --model tests/fixtures/tiny-sd15.safetensors --prompt "a full moon" --seed 5 --steps 4 \
        --init-image docs/pictures/inpaint-before.png --mask docs/pictures/inpaint-mask.png \
        --mask-blur "$blur" --out "docs/pictures/inpaint-blur-$blur.png"
done

for padding in 8 48; do
    pentimento generate --model tests/fixtures/tiny-sd15.safetensors --prompt "a full moon" --seed 5 --steps 4 \
        --init-image docs/pictures/inpaint-before.png --mask docs/pictures/inpaint-mask.png \
        --inpaint-area masked --padding "$padding" --width 128 --height 128 \
        --out "docs/pictures/inpaint-only-masked-$padding.png"
done

for content in original fill latent-noise latent-nothing; do
    pentimento generate --model tests/fixtures/tiny-sd15.safetensors --prompt "a full moon" --seed 5 --steps 4 \
        --init-image docs/pictures/inpaint-before.png --mask docs/pictures/inpaint-mask.png \
        --strength 0.5 --masked-content "$content" --out "docs/pictures/inpaint-content-$content.png"
done

pentimento generate --model tests/fixtures/tiny-sd15.safetensors --prompt "a full moon" --seed 5 --steps 4 \
    --init-image docs/pictures/inpaint-before.png --mask docs/pictures/inpaint-mask.png \
    --repaint-resample 3 --repaint-jump 2 --out docs/pictures/inpaint-repaint.png

pentimento generate --model tests/fixtures/tiny-sd15-inpainting.ckpt --prompt "a full moon" --seed 5 --steps 4 \
    --init-image docs/pictures/inpaint-before.png --mask docs/pictures/inpaint-mask.png \
    --out docs/pictures/inpaint-model.png

pentimento generate --model tests/fixtures/tiny-sd15-inpainting.ckpt --prompt "a red square" --seed 2 --steps 4 \
    --init-image docs/pictures/inpaint-fixture-image.png --mask docs/pictures/inpaint-fixture-mask.png \
    --out docs/pictures/inpaint-fixture-model.png

pentimento generate --model tests/fixtures/tiny-sd15-inpainting.ckpt --prompt "a village" --seed 5 --steps 4 \
    --init-image docs/pictures/inpaint-before.png --outpaint 64,0,64,0 \
    --out docs/pictures/inpaint-outpaint.png

# --- docs/exploring.md ---------------------------------------------------------------------

pentimento grid --model tests/fixtures/tiny-sd15.safetensors --prompt "a lighthouse" --steps 4 \
    --width 128 --height 128 --seeds 1-4 --out docs/pictures/explore-seeds.png

pentimento grid --model tests/fixtures/tiny-sd15.safetensors --prompt "a lighthouse" --steps 4 \
    --width 128 --height 128 --seed 10 --variation-seed 99 \
    --x variation-strength=0,0.1,0.25,0.5,1 --out docs/pictures/explore-variation.png

pentimento generate --model tests/fixtures/tiny-sd15.safetensors --prompt "a lighthouse" --steps 4 \
    --width 128 --height 128 --seed 99 --out docs/pictures/explore-seed-99.png

pentimento generate --model tests/fixtures/tiny-sd15.safetensors --prompt "a lighthouse" --steps 4 \
    --width 128 --height 128 --seed 10 --batch-count 2 --batch-size 2 \
    --out docs/pictures/explore-batch.png

pentimento grid --model tests/fixtures/tiny-sd15.safetensors --prompt "a lighthouse" --steps 4 \
    --width 128 --height 128 --seed 10 --x cfg=3,7.5,12 --y "sampler=Euler,Euler a" \
    --out docs/pictures/explore-grid.png

pentimento grid --model tests/fixtures/tiny-sd15.safetensors --prompt "a lighthouse at dusk" --steps 4 \
    --width 128 --height 128 --seed 10 --x "prompt-sr=lighthouse,windmill,castle" \
    --out docs/pictures/explore-prompt-sr.png

pentimento generate --model tests/fixtures/tiny-sd15.safetensors \
    --params-from docs/pictures/explore-batch-2.png --steps 8 \
    --out docs/pictures/explore-params-from.png

echo "make-pictures.sh: pictures in $ROOT/$OUT in $((SECONDS - START)) s"
