#!/usr/bin/env bash
# Builds the .deb with cargo-deb (configured in Cargo.toml, [package.metadata.deb]), unpacks it
# into a scratch root (no root needed, nothing installed on this machine), checks its layout, and
# starts the packaged binary under Xvfb: the check fails unless its window appears and draws.
#
#   cargo install cargo-deb --locked     # once
#   dist/linux/check-deb.sh              # prints the package's path and sizes; a picture in $OUT
#
# Needs: dpkg-deb and what window-check.sh needs (Xvfb, xdotool, ImageMagick).
# PROFILE=release (default) or dist (LTO, one codegen unit: the published build).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
profile=${PROFILE:-release}

deb=$(cargo deb --locked --profile "$profile" 2>&1 | tee "$out/cargo-deb.log" | tail -1)
[ -f "$deb" ] || { echo "cargo deb made no package (see $out/cargo-deb.log)" >&2; exit 1; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
dpkg-deb -x "$deb" "$root"
dpkg-deb -I "$deb" > "$out/control.txt"
for f in usr/bin/pentimento usr/share/applications/pentimento.desktop \
         usr/share/icons/hicolor/scalable/apps/pentimento.svg \
         usr/share/icons/hicolor/256x256/apps/pentimento.png usr/share/doc/pentimento/README.md; do
    [ -s "$root/$f" ] || { echo "the package lacks $f" >&2; exit 1; }
done
grep -q '^Icon=pentimento$' "$root/usr/share/applications/pentimento.desktop"
"$root/usr/bin/pentimento" --version

# The packaged app, started as the desktop entry starts it.
dist/linux/window-check.sh "$out/deb-app.png" -- "$root/usr/bin/pentimento"
echo "package: $deb ($(du -h "$deb" | cut -f1)); binary $(du -h "$root/usr/bin/pentimento" | cut -f1)"
