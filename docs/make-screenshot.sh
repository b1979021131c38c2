#!/usr/bin/env bash
# README's screenshot, made from the real window under Xvfb: the app opens a picture with the
# tiny test model, a mask is painted as a person paints it (pointer strokes through xdotool),
# Generate inpaints it and the result is accepted as a layer. Fails if the window does not
# appear, does not draw, or the app exits; CI runs it (.ci/run).
#
#   docs/make-screenshot.sh [PENTIMENTO_BINARY] [OUT.png]
#
# Defaults: target/debug/pentimento (what `cargo test` builds) and docs/screenshot.png.
# Needs Xvfb, xdotool and ImageMagick.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/target/debug/pentimento}
shot=${2:-$root/docs/screenshot.png}
[ -x "$bin" ] || { echo "no pentimento binary at $bin: build it first (cargo build)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A picture to paint on: a landscape drawn here (the tiny model's own pictures are noise).
# Small, so that the tiny model (whose attention works at every latent pixel) answers in
# seconds on a 2-core CPU.
convert -size 384x288 gradient:'#7fb2e5'-'#f3d9b1' \
    -fill '#f7e27a' -draw 'circle 282,90 282,117' \
    -fill '#5b7f4a' -draw 'polygon 0,198 90,150 180,192 276,144 384,186 384,288 0,288' \
    -fill '#3d5a34' -draw 'polygon 0,240 120,204 252,246 384,216 384,288 0,288' \
    "$work/landscape.png"

# The strokes: a loop of short pointer moves around the sun, as a hand paints a mask.
cat > "$work/paint.sh" <<'ACTIONS'
eval "$(xdotool getwindowgeometry --shell "$WINDOW")"
# The picture is fitted in the canvas between the prompt panel (left) and the layers (right);
# the sun sits right of and above the canvas centre. Keys need the focus (no window manager).
xdotool windowfocus --sync "$WINDOW"
# The prompt first: its field is at the top of the left panel.
xdotool mousemove --window "$WINDOW" 175 100 click 1
sleep 0.5
xdotool type --delay 20 "a red balloon over green hills"
sleep 0.5
cx=$((WIDTH / 2 + 220)); cy=$((HEIGHT / 2 - 93))
# The mask brush is the tool a fresh start has; pressing on the canvas also ends the typing.
xdotool mousemove --window "$WINDOW" $cx $cy
xdotool mousedown 1
for a in $(seq 0 12 720); do
    r=$((20 + a / 24))
    x=$(awk -v c=$cx -v a=$a -v r=$r 'BEGIN { printf "%d", c + r * cos(a * 3.14159 / 180) }')
    y=$(awk -v c=$cy -v a=$a -v r=$r 'BEGIN { printf "%d", c + r * sin(a * 3.14159 / 180) }')
    xdotool mousemove --window "$WINDOW" "$x" "$y"
    sleep 0.02
done
xdotool mouseup 1
sleep 1
# Generate (Ctrl+Enter), then Accept (Enter) once the result is in the history folder.
xdotool key --window "$WINDOW" ctrl+Return
for _ in $(seq 240); do
    ls "$APP_HOME"/data/pentimento/history/*.png > /dev/null 2>&1 && break
    sleep 0.5
done
ls "$APP_HOME"/data/pentimento/history/*.png > /dev/null 2>&1 ||
    { echo "no result within 2 minutes" >&2; exit 1; }
sleep 1
xdotool key --window "$WINDOW" Return
sleep 2
ACTIONS

"$root/dist/linux/window-check.sh" "$shot" --settle 4 --then "$work/paint.sh" -- \
    "$bin" --model "$root/tests/fixtures/tiny-sd15.safetensors" "$work/landscape.png"
