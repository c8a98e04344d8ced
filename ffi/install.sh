#!/usr/bin/env bash
# Build the C library in release and install it under PREFIX the way C and C++ projects find a
# library (the files cargo-c's `cargo cinstall` installs, without building cargo-c itself, which
# compiles all of cargo):
#   PREFIX/include/regmirror/regmirror.h
#   PREFIX/lib/libregmirror.so.X.Y.Z, with the links libregmirror.so.SONAME-VERSION and libregmirror.so
#   PREFIX/lib/libregmirror.a
#   PREFIX/lib/pkgconfig/regmirror.pc                  (pkg-config --cflags --libs regmirror)
#   PREFIX/lib/cmake/regmirror/regmirror-config.cmake  (find_package(regmirror), target regmirror::regmirror)
#
# Usage: ffi/install.sh PREFIX            e.g. ffi/install.sh /usr/local
#   LIBDIR=lib/x86_64-linux-gnu ffi/install.sh /usr   libraries under PREFIX/LIBDIR (default lib)
#   DESTDIR=/tmp/stage ffi/install.sh /usr            stage the files under DESTDIR (for packaging)
# Linux only (the SONAME and the system libraries of the static library are Linux's).
set -euo pipefail

if [ "$#" -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 PREFIX   (for example /usr/local; see the comment at the top of $0)" >&2
    exit 2
fi
prefix="$(realpath -m "$1")"
libdir_rel="${LIBDIR:-lib}"
libdir_rel="${libdir_rel#/}"
destdir="${DESTDIR:-}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

command -v cargo >/dev/null || {
    echo "$0: cargo not found on PATH: the C library is built from source with Rust (https://rustup.rs)" >&2
    exit 1
}
# Cargo's own account of what it built says where the libraries are (whatever the target dir).
built="$(cargo build --release -p regmirror-ffi --message-format=json-render-diagnostics |
    sed -n 's|.*"filenames":\["\([^"]*\)/libregmirror\.so".*|\1|p')"
if [ ! -f "$built/libregmirror.so" ] || [ ! -f "$built/libregmirror.a" ]; then
    echo "$0: cargo built no libregmirror.so and libregmirror.a" >&2
    exit 1
fi
version="$(cargo pkgid -p regmirror-ffi)"
version="${version##*[@#]}"
so="$built/libregmirror.so"
soname="$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')"
if [ -z "$soname" ]; then
    echo "$0: $so has no SONAME (ffi/build.rs sets it)" >&2
    exit 1
fi

libdir="$prefix/$libdir_rel"
includedir="$prefix/include"
substitute() {
    sed -e "s|@PREFIX@|$prefix|g" -e "s|@LIBDIR@|$libdir|g" -e "s|@INCLUDEDIR@|$includedir|g" \
        -e "s|@VERSION@|$version|g" -e "s|@SONAME@|$soname|g" "$1"
}

install -d "$destdir$includedir/regmirror" "$destdir$libdir/pkgconfig" "$destdir$libdir/cmake/regmirror"
install -m 644 ffi/include/regmirror.h "$destdir$includedir/regmirror/regmirror.h"
install -m 755 "$so" "$destdir$libdir/libregmirror.so.$version"
ln -sfn "libregmirror.so.$version" "$destdir$libdir/$soname"
ln -sfn "libregmirror.so.$version" "$destdir$libdir/libregmirror.so"
install -m 644 "$built/libregmirror.a" "$destdir$libdir/libregmirror.a"
substitute ffi/pkg/regmirror.pc.in >"$destdir$libdir/pkgconfig/regmirror.pc"
substitute ffi/pkg/regmirror-config.cmake.in >"$destdir$libdir/cmake/regmirror/regmirror-config.cmake"
substitute ffi/pkg/regmirror-config-version.cmake.in \
    >"$destdir$libdir/cmake/regmirror/regmirror-config-version.cmake"
echo "installed regmirror $version (SONAME $soname) under $destdir$prefix"
