#!/usr/bin/env bash
# Starts a command under a fresh Xvfb and fails unless a window named "Pentimento…" appears and
# draws; saves a picture of that window. Shared by the package checks and the README screenshot.
#
#   dist/linux/window-check.sh OUT.png [--settle SECONDS] [--size WxH] [--then SCRIPT] \
#       -- COMMAND [ARGS...]
#
# --then: a script run once the window is there and settled (DISPLAY and WINDOW set: drive it
# with xdotool; APP_HOME: the app's home), before the picture is taken; the check fails if it
# fails.
# The command runs with a home of its own (nothing of this machine's settings, models or
# session is seen or changed). Needs Xvfb, xdotool and ImageMagick (import, convert).
set -euo pipefail
usage="usage: window-check.sh OUT.png [--settle SECONDS] [--size WxH] [--then SCRIPT] -- COMMAND [ARGS...]"
picture=${1:?$usage}
shift
settle=5
size=1280x800
then=
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    case $1 in
        --settle) settle=${2:?$usage}; shift 2 ;;
        --size) size=${2:?$usage}; shift 2 ;;
        --then) then=${2:?$usage}; shift 2 ;;
        *) echo "$usage" >&2; exit 2 ;;
    esac
done
[ "${1:-}" = "--" ] || { echo "$usage" >&2; exit 2; }
shift
[ $# -gt 0 ] || { echo "$usage" >&2; exit 2; }
for tool in Xvfb xdotool import convert; do
    command -v "$tool" >/dev/null || { echo "window-check.sh needs $tool" >&2; exit 1; }
done

home=$(mktemp -d)
log=$(mktemp)
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
# A free display number: Xvfb refuses one that is taken, so try a few.
display=
for _ in $(seq 20); do
    number=$(( 90 + RANDOM % 400 ))
    [ -e "/tmp/.X11-unix/X$number" ] && continue
    Xvfb ":$number" -screen 0 "${size}x24" -nolisten tcp >/dev/null 2>&1 &
    xvfb=$!
    # Ready once its socket exists; gone if the number was taken after all.
    for _ in $(seq 100); do
        [ -e "/tmp/.X11-unix/X$number" ] && break
        kill -0 $xvfb 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 $xvfb 2>/dev/null && [ -e "/tmp/.X11-unix/X$number" ]; then
        display=:$number
        break
    fi
done
[ -n "$display" ] || { echo "no Xvfb display could be started" >&2; exit 1; }
app=
cleanup() {
    [ -n "$app" ] && kill "$app" 2>/dev/null
    kill "$xvfb" 2>/dev/null
    rm -rf "$home" "$log"
}
trap cleanup EXIT

DISPLAY=$display HOME=$home XDG_DATA_HOME=$home/data XDG_CONFIG_HOME=$home/config \
    XDG_CACHE_HOME=$home/cache "$@" > "$log" 2>&1 &
app=$!
window=
for _ in $(seq 90); do
    window=$(DISPLAY=$display xdotool search --name '^Pentimento' 2>/dev/null | head -1 || true)
    [ -n "$window" ] && break
    if ! kill -0 "$app" 2>/dev/null; then
        echo "the app exited before its window appeared:" >&2
        cat "$log" >&2
        exit 1
    fi
    sleep 1
done
[ -n "$window" ] || { echo "no Pentimento window within 90 s" >&2; cat "$log" >&2; exit 1; }
sleep "$settle"
kill -0 "$app" 2>/dev/null || { echo "the app exited:" >&2; cat "$log" >&2; exit 1; }
if [ -n "$then" ]; then
    DISPLAY=$display WINDOW=$window APP_HOME=$home bash -euo pipefail "$then" ||
        { echo "$then failed; the app said:" >&2; cat "$log" >&2; exit 1; }
    kill -0 "$app" 2>/dev/null || { echo "the app exited:" >&2; cat "$log" >&2; exit 1; }
fi
DISPLAY=$display import -window "$window" "$picture"
# A window that drew has many colours; a black or blank one has one or two.
colours=$(convert "$picture" -format '%k' info:)
if [ "$colours" -le 50 ]; then
    echo "the window drew nothing ($colours colours): $picture" >&2
    exit 1
fi
echo "window drawn: $picture ($colours colours)"
