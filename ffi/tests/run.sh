#!/usr/bin/env bash
# Install the C library as a C project gets it (ffi/install.sh: release build, SONAME, pkg-config
# file) into target/ctest/prefix, check the checked-in header is what cbindgen generates now and
# that the library exports only regmirror_* symbols, then compile every ffi/tests/*.c with
# -Wall -Wextra -Werror -pedantic using `pkg-config --cflags --libs regmirror`, against the shared
# and the static library, and run it. Run from anywhere; used by scripts/test.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

out="$root/target/ctest"
prefix="$out/prefix"
rm -rf "$prefix"
mkdir -p "$out"
bash ffi/install.sh "$prefix"

echo "checking ffi/include/regmirror.h is current"
(cd ffi && cbindgen --quiet --config cbindgen.toml --output "$out/regmirror.h")
if ! diff -u ffi/include/regmirror.h "$out/regmirror.h"; then
    echo "ffi/include/regmirror.h is out of date: run (cd ffi && cbindgen --config cbindgen.toml --output include/regmirror.h) and commit it" >&2
    exit 1
fi

lib="$prefix/lib"
export PKG_CONFIG_PATH="$lib/pkgconfig"
echo "pkg-config finds regmirror $(pkg-config --modversion regmirror)"

echo "checking libregmirror.so exports only regmirror_* and links its SONAME"
foreign="$(nm -D --defined-only "$lib/libregmirror.so" | awk '{print $NF}' | grep -v '^regmirror_' || true)"
if [ -n "$foreign" ]; then
    printf 'libregmirror.so exports symbols outside regmirror_*:\n%s\n' "$foreign" >&2
    exit 1
fi
soname="$(readelf -d "$lib/libregmirror.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')"
[ -L "$lib/$soname" ] && [ "$(readlink -f "$lib/$soname")" = "$(readlink -f "$lib/libregmirror.so")" ] || {
    echo "$lib/$soname (the SONAME) is not a link to the installed library" >&2
    exit 1
}

needs() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
cflags=(-std=c11 -Wall -Wextra -Werror -pedantic -pthread)
read -ra pc_cflags <<<"$(pkg-config --cflags regmirror)"
read -ra pc_libs <<<"$(pkg-config --libs regmirror)"
# Statically as the README says: the archive, then what Rust's std needs (Libs.private).
static_libs="$(pkg-config --static --libs-only-l regmirror)"
read -ra pc_static <<<"$(pkg-config --variable=libdir regmirror)/libregmirror.a ${static_libs/-lregmirror/}"
# The stored-mirror tests need real registries, a PostgreSQL and the regmirror CLI: the test
# kit's services (the debug build the Rust tests use) print their addresses, then run until
# their stdin closes at exit. Built as `cargo test --workspace` builds them (after it, nothing
# to do): a `cargo build` of just these packages resolves other features and rebuilds the tree.
echo "starting the test registries and PostgreSQL"
bins="$(cargo test --workspace --no-run --message-format=json-render-diagnostics |
    sed -n 's|.*"executable":"\([^"]*\)".*|\1|p')"
services_bin="$(grep '/regmirror-test-services$' <<<"$bins")"
REGMIRROR_TEST_CLI="$(grep '/regmirror$' <<<"$bins")"
export REGMIRROR_TEST_CLI
coproc SERVICES { "$services_bin" --postgres; }
services_pid=$SERVICES_PID
services_in=${SERVICES[1]}
trap 'eval "exec $services_in>&-"; wait "$services_pid" || true' EXIT
while read -r line <&"${SERVICES[0]}"; do
    [ "$line" = READY ] && break
    export "${line?}"
done
[ -n "${REGMIRROR_TEST_POSTGRES:-}" ] || {
    echo "the test services did not start" >&2
    exit 1
}

for test in ffi/tests/*.c; do
    name="$(basename "$test" .c)"
    gcc "${cflags[@]}" "${pc_cflags[@]}" "$test" -o "$out/$name" "${pc_libs[@]}" -Wl,-rpath,"$lib"
    gcc "${cflags[@]}" "${pc_cflags[@]}" "$test" -o "$out/$name-static" "${pc_static[@]}"
    if ! needs "$out/$name" | grep -qx "$soname"; then
        echo "$name does not load $soname: $(needs "$out/$name" | tr '\n' ' ')" >&2
        exit 1
    fi
    if needs "$out/$name-static" | grep -q libregmirror; then
        echo "$name-static still loads the shared library" >&2
        exit 1
    fi
    # The stored-mirror scenario waits on slow downloads: each store once, one per linkage.
    shared_args=() static_args=()
    [ "$name" = mirrors ] && shared_args=(sqlite) static_args=(postgres)
    echo "== $name (shared) ${shared_args[*]}"
    "$out/$name" "${shared_args[@]}"
    echo "== $name (static) ${static_args[*]}"
    "$out/$name-static" "${static_args[@]}"
done

echo "== CMake: find_package(regmirror) from the prefix, shared and static targets"
cmake -S ffi/tests/cmake -B "$out/cmake" -DCMAKE_PREFIX_PATH="$prefix" --fresh >/dev/null
cmake --build "$out/cmake" >/dev/null
"$out/cmake/version_shared"
"$out/cmake/version_static"
if needs "$out/cmake/version_static" | grep -q libregmirror; then
    echo "the regmirror::regmirror_static target still loads the shared library" >&2
    exit 1
fi
