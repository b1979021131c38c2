#!/usr/bin/env bash
# Builds the AppImage (build-appimage.sh), checks what is inside, and starts it as a user does
# (./Pentimento-x86_64.AppImage: mounted through FUSE) under Xvfb: the check fails unless its
# window appears and draws. Where FUSE is not available it says so and starts it with
# --appimage-extract-and-run instead (the runtime's way for such machines).
#
#   dist/linux/check-appimage.sh RUNTIME_GIT SQUASHFUSE_GIT    # a picture in $OUT
#
# Needs what build-appimage.sh and window-check.sh need.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
image=$(dist/linux/build-appimage.sh "$@" | tail -1)
[ -x "$image" ] || { echo "no AppImage was made" >&2; exit 1; }

# What is inside, through the runtime itself.
listing=$(mktemp -d)
trap 'rm -rf "$listing"' EXIT
(cd "$listing" && "$image" --appimage-extract > /dev/null)
for f in AppRun pentimento.desktop pentimento.png .DirIcon usr/bin/pentimento \
         usr/share/icons/hicolor/scalable/apps/pentimento.svg \
         usr/share/icons/hicolor/256x256/apps/pentimento.png; do
    [ -e "$listing/squashfs-root/$f" ] || { echo "the AppImage lacks $f" >&2; exit 1; }
done
grep -q '^Icon=pentimento$' "$listing/squashfs-root/pentimento.desktop"

how=()
if [ -c /dev/fuse ] && command -v fusermount3 >/dev/null && "$image" --version > /dev/null 2>&1; then
    echo "started through FUSE"
else
    echo "FUSE is not usable here: starting with --appimage-extract-and-run"
    how=(--appimage-extract-and-run)
fi
"$image" "${how[@]}" --version
dist/linux/window-check.sh "$out/appimage-app.png" -- "$image" "${how[@]}"
echo "AppImage: $image ($(du -h "$image" | cut -f1)); binary $(du -h "$listing/squashfs-root/usr/bin/pentimento" | cut -f1)"
