#!/usr/bin/env bash
# Builds the .deb with cargo-deb (configured in Cargo.toml, [package.metadata.deb]), unpacks it
# into a scratch root (no root needed, nothing installed on this machine), checks its layout, and
# starts the packaged binary under Xvfb: the check fails unless its window appears and draws.
#
#   cargo install cargo-deb --locked     # once
#   dist/linux/check-deb.sh              # prints the package's path and sizes; a screenshot in $OUT
#
# Needs: dpkg-deb, Xvfb, xdotool, ImageMagick's import (see ../shared/notes/gui-testing.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"

deb=$(cargo deb --locked 2>&1 | tee "$out/cargo-deb.log" | tail -1)
[ -f "$deb" ] || { echo "cargo deb made no package (see $out/cargo-deb.log)" >&2; exit 1; }

root=$(mktemp -d)
dpkg-deb -x "$deb" "$root"
dpkg-deb -I "$deb" > "$out/control.txt"
for f in usr/bin/pentimento usr/share/applications/pentimento.desktop \
         usr/share/icons/hicolor/scalable/apps/pentimento.svg \
         usr/share/icons/hicolor/256x256/apps/pentimento.png usr/share/doc/pentimento/README.md; do
    [ -s "$root/$f" ] || { echo "the package lacks $f" >&2; exit 1; }
done
grep -q '^Icon=pentimento$' "$root/usr/share/applications/pentimento.desktop"
"$root/usr/bin/pentimento" --version

# The packaged app, started as the desktop entry starts it, with a home of its own.
home=$(mktemp -d)
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
display=:$(( 90 + RANDOM % 100 ))
Xvfb "$display" -screen 0 1280x800x24 >/dev/null 2>&1 &
xvfb=$!
trap 'kill $app $xvfb 2>/dev/null || true' EXIT
sleep 1
DISPLAY=$display HOME=$home XDG_DATA_HOME=$home/data XDG_CONFIG_HOME=$home/config \
    "$root/usr/bin/pentimento" > "$out/app.log" 2>&1 &
app=$!
window=
for _ in $(seq 60); do
    window=$(DISPLAY=$display xdotool search --name '^Pentimento' 2>/dev/null | head -1 || true)
    [ -n "$window" ] && break
    kill -0 $app 2>/dev/null || { echo "the packaged app exited:"; cat "$out/app.log"; exit 1; } >&2
    sleep 1
done
[ -n "$window" ] || { echo "no Pentimento window within a minute" >&2; exit 1; }
sleep 5
DISPLAY=$display import -window root "$out/deb-app.png"
# A window that drew has many colours; a black or blank screen has one or two.
colours=$(convert "$out/deb-app.png" -format '%k' info:)
[ "$colours" -gt 50 ] || { echo "the window drew nothing ($colours colours)" >&2; exit 1; }
echo "package: $deb ($(du -h "$deb" | cut -f1)); binary $(du -h "$root/usr/bin/pentimento" | cut -f1)"
echo "window drawn: $out/deb-app.png ($colours colours)"
