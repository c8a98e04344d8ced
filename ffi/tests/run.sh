#!/usr/bin/env bash
# Build the C library, check the checked-in header is what cbindgen generates now, then compile
# every ffi/tests/*.c with -Wall -Wextra -Werror against the shared and the static library and
# run it. Run from anywhere; used by scripts/test.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

cargo build -p regmirror-ffi
lib="$root/target/x86_64-unknown-linux-gnu/debug"
out="$root/target/ctest"
mkdir -p "$out"

echo "checking ffi/include/regmirror.h is current"
(cd ffi && cbindgen --quiet --config cbindgen.toml --output "$out/regmirror.h")
if ! diff -u ffi/include/regmirror.h "$out/regmirror.h"; then
    echo "ffi/include/regmirror.h is out of date: run (cd ffi && cbindgen --config cbindgen.toml --output include/regmirror.h) and commit it" >&2
    exit 1
fi

cflags=(-std=c11 -Wall -Wextra -Werror -I ffi/include)
for test in ffi/tests/*.c; do
    name="$(basename "$test" .c)"
    gcc "${cflags[@]}" "$test" -L "$lib" -lregmirror -Wl,-rpath,"$lib" -o "$out/$name"
    # Static linking needs the system libraries Rust's std uses (rustc --print native-static-libs).
    gcc "${cflags[@]}" "$test" "$lib/libregmirror.a" -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc \
        -o "$out/$name-static"
    echo "== $name (shared)"
    "$out/$name"
    echo "== $name (static)"
    "$out/$name-static"
done
