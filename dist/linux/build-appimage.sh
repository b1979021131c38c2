#!/usr/bin/env bash
# Builds Pentimento-x86_64.AppImage: the AppImage type 2 runtime compiled here from its public
# source at a pinned commit (with squashfuse, also pinned, and the system's static libfuse3,
# zstd and zlib), followed by a zstd squashfs of an AppDir holding the binary, the desktop entry
# and the icons. appimagetool and linuxdeploy, and the prebuilt runtime they embed, are
# downloaded from GitHub releases by every packaging tool (cargo-packager included); building the
# runtime from source means nothing unverified is shipped, and it works where GitHub's release
# files cannot be reached.
#
#   dist/linux/build-appimage.sh RUNTIME_GIT SQUASHFUSE_GIT [OUT_DIR]
#
# RUNTIME_GIT: a git directory of AppImage/type2-runtime; SQUASHFUSE_GIT: of vasi/squashfuse
# (any clones holding the commits below). PROFILE=release (default) or dist (LTO: the published
# build). Needs gcc, autoconf, automake, libtool, pkg-config, mksquashfs and the static
# libfuse3, libzstd and zlib (Debian/Ubuntu: squashfs-tools libfuse3-dev libzstd-dev zlib1g-dev
# autoconf automake libtool pkg-config). Prints the AppImage's path.
set -euo pipefail
RUNTIME_COMMIT=caf24f9f712084686bfc24a70b75e50df0aefb9c   # type2-runtime, 2025
SQUASHFUSE_COMMIT=775b4cc72ab47641637897f11ce0da15d5c1f115 # squashfuse 0.5.2, as the runtime's own build uses
usage="usage: build-appimage.sh RUNTIME_GIT SQUASHFUSE_GIT [OUT_DIR]"
runtime_git=${1:?$usage}
squashfuse_git=${2:?$usage}
here=$(cd "$(dirname "$0")/../.." && pwd)
out=${3:-$here/target/appimage}
profile=${PROFILE:-release}
mkdir -p "$out"
out=$(cd "$out" && pwd)
for tool in gcc autoreconf libtoolize pkg-config mksquashfs; do
    command -v "$tool" >/dev/null || { echo "build-appimage.sh needs $tool" >&2; exit 1; }
done
for lib in libfuse3.a libzstd.a libz.a; do
    [ -n "$(gcc -print-file-name="$lib" | grep /)" ] || { echo "build-appimage.sh needs the static $lib" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
runtime=$out/runtime-x86_64
if [ ! -s "$runtime" ] || [ "$(cat "$out/runtime.commit" 2>/dev/null)" != "$RUNTIME_COMMIT" ]; then
    # squashfuse as a static library, with the headers the runtime includes (some are private).
    git clone -q --no-checkout "$squashfuse_git" "$work/squashfuse"
    git -C "$work/squashfuse" checkout -q "$SQUASHFUSE_COMMIT"
    (
        cd "$work/squashfuse"
        ./autogen.sh > "$work/autogen.log" 2>&1
        ./configure --prefix="$work/prefix" --disable-shared --enable-static --disable-demo \
            --without-xz --without-lzo --without-lz4 \
            CFLAGS="-Os -ffunction-sections -fdata-sections" > "$work/configure.log"
        make -j"$(nproc)" > "$work/make.log"
        make install > /dev/null
        mkdir -p "$work/prefix/include/squashfuse"
        cp ./*.h "$work/prefix/include/squashfuse/"
    )
    git clone -q --no-checkout "$runtime_git" "$work/runtime"
    git -C "$work/runtime" checkout -q "$RUNTIME_COMMIT"
    (
        cd "$work/runtime/src/runtime"
        # Everything but the C library is linked in, so the runtime needs no FUSE library on the
        # user's machine (only the fusermount3 helper, or --appimage-extract-and-run).
        gcc -std=gnu99 -Os -D_FILE_OFFSET_BITS=64 -DGIT_COMMIT="\"${RUNTIME_COMMIT:0:7}\"" \
            -T data_sections.ld -ffunction-sections -fdata-sections -Wl,--gc-sections -Wall \
            -I"$work/prefix/include/squashfuse" -I"$work/prefix/include" -I/usr/include/fuse3 \
            runtime.c -L"$work/prefix/lib" \
            -Wl,-Bstatic -lsquashfuse_ll -lsquashfuse -lfuse3 -lzstd -lz \
            -Wl,-Bdynamic -lpthread -ldl -o runtime 2> "$work/runtime-build.log" ||
            { cat "$work/runtime-build.log" >&2; exit 1; }
        strip runtime
        # The type 2 magic bytes at offset 8 of the ELF header, after every tool that rewrites it.
        printf 'AI\002' | dd of=runtime bs=1 count=3 seek=8 conv=notrunc status=none
        cp runtime "$runtime"
    )
    echo "$RUNTIME_COMMIT" > "$out/runtime.commit"
fi

(cd "$here" && cargo build --locked --profile "$profile" --quiet)
case $profile in
    dev) bin_dir=debug ;;
    *) bin_dir=$profile ;;
esac
binary=${CARGO_TARGET_DIR:-$here/target}/$bin_dir/pentimento

# The AppDir: the program where the desktop would install it, the entry and icon at the top
# where the runtime and desktop integrations look for them.
appdir=$work/Pentimento.AppDir
mkdir -p "$appdir/usr/bin" "$appdir/usr/share/applications" "$appdir/usr/share/doc/pentimento"
install -m 755 "$binary" "$appdir/usr/bin/pentimento"
strip "$appdir/usr/bin/pentimento" 2>/dev/null || true
install -m 644 "$here/dist/linux/pentimento.desktop" "$appdir/usr/share/applications/"
install -m 644 "$here/dist/linux/pentimento.desktop" "$appdir/pentimento.desktop"
install -m 644 "$here/README.md" "$appdir/usr/share/doc/pentimento/"
icons=$appdir/usr/share/icons/hicolor
install -D -m 644 "$here/assets/app-icon/pentimento.svg" "$icons/scalable/apps/pentimento.svg"
for size in 16 24 32 48 64 128 256 512; do
    install -D -m 644 "$here/assets/app-icon/pentimento-$size.png" \
        "$icons/${size}x$size/apps/pentimento.png"
done
install -m 644 "$here/assets/app-icon/pentimento-256.png" "$appdir/pentimento.png"
ln -s pentimento.png "$appdir/.DirIcon"
# AppRun: the program, with the arguments given to the AppImage.
cat > "$appdir/AppRun" <<'APPRUN'
#!/bin/sh
here=$(dirname "$(readlink -f "$0")")
exec "$here/usr/bin/pentimento" "$@"
APPRUN
chmod 755 "$appdir/AppRun"

mksquashfs "$appdir" "$work/image.squashfs" -root-owned -noappend -comp zstd \
    -Xcompression-level 19 -quiet > /dev/null
image=$out/Pentimento-x86_64.AppImage
cat "$runtime" "$work/image.squashfs" > "$image"
chmod 755 "$image"
echo "$image"
