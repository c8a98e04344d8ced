#!/usr/bin/env bash
# THE test command: installs what the tests need on a fresh Debian 12 machine (root, with Rust,
# Python 3.11 + pip, pyenv's Python 3.10, Node 20 + npm and gcc present), then runs every suite:
# Rust (fmt, clippy, docs, tests), then each binding in release as its users install it: C
# (ffi/install.sh, header drift check, C tests via pkg-config, CMake), Python (the abi3 wheel in a
# new venv, pip install ./bindings-python; pytest, mypy --strict on the stubs) and Node (node
# --test, tsc on index.d.ts, npm pack, npm install of the tarball and of the directory), and that
# every artefact carries the workspace version.
# Fails on the first failure. .ci/run execs this script.
#
# To add a step: write it as a section below (section "name"; commands). Services a suite needs
# (e.g. PostgreSQL) start in the "Services" section and are stopped by the EXIT trap.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

started=$SECONDS
section() {
    printf '\n==== %s (%ss elapsed) ====\n' "$*" "$((SECONDS - started))"
}

# Commands run at exit, last added first (e.g. stopping a service started below).
cleanups=()
on_exit() {
    local i
    for ((i = ${#cleanups[@]} - 1; i >= 0; i--)); do eval "${cleanups[i]}" || true; done
}
trap on_exit EXIT

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

section "Setup: system packages"
missing=()
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v skopeo >/dev/null || missing+=(skopeo)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
command -v cmake >/dev/null || missing+=(cmake) # the C library's CMake package is tested
command -v chromium >/dev/null || missing+=(chromium) # the worker's status page is loaded in it
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]}"
    # Keep the packages' own services (a registry on all interfaces, a PostgreSQL cluster) from
    # starting: the tests start their own, on loopback only.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
        as_root chmod +x /usr/sbin/policy-rc.d
        cleanups+=("as_root rm -f /usr/sbin/policy-rc.d")
    fi
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
else
    echo "docker-registry, skopeo, PostgreSQL, cmake and chromium present"
fi

section "Setup: cbindgen"
if ! cbindgen --version 2>/dev/null | grep -q '^cbindgen 0\.29\.4$'; then
    cargo install cbindgen --version 0.29.4 --locked
fi
cbindgen --version

section "Setup: Python venv (target/py-venv)"
venv="$root/target/py-venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || {
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
        python3 -m venv "$venv"
    }
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check 'maturin==1.16.*' 'prometheus_client==0.*'
# The worker API's tests read /metrics with prometheus_client's parser from this venv.
export REGMIRROR_TEST_PYTHON="$venv/bin/python"
"$venv/bin/maturin" --version
# maturin builds pyo3 with these variables set; setting them for every cargo command below
# lets cargo and maturin share one pyo3 build instead of rebuilding it for each (a mismatch
# only costs time). The signature's format is maturin's.
PYO3_PYTHON="$venv/bin/python"
PYO3_ENVIRONMENT_SIGNATURE="$("$PYO3_PYTHON" -c 'import struct, sys
print("cpython-%d.%d-%dbit" % (sys.version_info[0], sys.version_info[1], struct.calcsize("P") * 8))')"
export PYO3_PYTHON PYO3_ENVIRONMENT_SIGNATURE PYTHON_SYS_EXECUTABLE="$PYO3_PYTHON"
export PYO3_BUILD_EXTENSION_MODULE=1

section "Setup: npm ci (bindings-node)"
# --ignore-scripts: the package's own install step would build the release addon here; the Node
# section builds it (napi build --release) after the other release builds it shares work with.
(cd bindings-node && npm ci --no-audit --no-fund --ignore-scripts)

section "Services"
echo "none yet"

section "Rust: cargo fmt --check"
cargo fmt --all --check

section "Rust: cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

section "Rust: cargo doc (the core crate's docs, as docs.rs builds them; broken links fail)"
RUSTDOCFLAGS="-D warnings" cargo doc -p regmirror --no-deps --all-features

section "Rust: cargo test"
cargo test --workspace

# The three native artefacts are release builds, tested as users install them. They share one
# release build of the engine and its dependencies (one target dir, see .cargo/config.toml; the
# same features), so only the first of them compiles the tree.
section "C: ffi/install.sh (release) into a prefix, header drift check, C tests via pkg-config"
bash ffi/tests/run.sh

section "Python: release abi3 wheel + sdist; wheel into a new Python 3.10 venv (pytest), pip install ./bindings-python into a new 3.11 venv (pytest without servers, mypy)"
# The abi3 wheel claims every CPython from 3.10 on: test it under 3.10 itself (pyenv's, which
# this machine's image has; Debian 12 packages only 3.11).
py310="$(compgen -G "$HOME/.pyenv/versions/3.10.*/bin/python3.10" | sort -V | tail -n 1 || true)"
[ -n "$py310" ] || py310="$(command -v python3.10 2>/dev/null || true)"
if [ -z "$py310" ] || ! "$py310" -c 'import sys; assert sys.version_info[:2] == (3, 10)'; then
    echo "Python 3.10 not found (pyenv's ~/.pyenv/versions/3.10.*, or python3.10 on PATH): the abi3 wheel is tested under the oldest Python it claims" >&2
    exit 1
fi
(
    wheels="$root/target/wheels"
    rm -rf "$wheels"
    # pyproject.toml's [tool.maturin] sets the manylinux policy and fails the build if the
    # library needs newer glibc symbols than that policy allows.
    "$venv/bin/maturin" build --release --manifest-path bindings-python/Cargo.toml --out "$wheels"
    "$venv/bin/maturin" sdist --manifest-path bindings-python/Cargo.toml --out "$wheels"
    wheel="$(compgen -G "$wheels/regmirror-*-cp310-abi3-manylinux_*_x86_64.whl")"
    ls -l "$wheels"

    # A new venv for each install, as a user starts; the tests then import the installed package.
    new_venv() {
        rm -rf "$2"
        "$1" -m venv "$2"
        "$2/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    }
    run_tests() {
        local venv="$1"
        shift
        (cd bindings-python && "$venv/bin/python" -c 'import regmirror, sys
assert "site-packages" in regmirror.__file__, regmirror.__file__
print("testing", regmirror.__file__, "on Python", sys.version.split()[0])' &&
            "$venv/bin/python" -m pytest -p no:cacheprovider "$@")
    }
    new_venv "$py310" "$root/target/py310-wheel"
    "$root/target/py310-wheel/bin/pip" install -q "$wheel" pytest pytest-asyncio
    run_tests "$root/target/py310-wheel" tests

    # The README's install line, from this checkout (maturin builds the same release wheel).
    new_venv python3 "$root/target/py-source"
    # mypy pinned: a new release's stricter checks must not fail a run of unchanged code.
    "$root/target/py-source/bin/pip" install -q ./bindings-python pytest pytest-asyncio 'mypy==2.4.*'
    # The same library as the wheel above, which ran the whole suite: here the tests that start
    # no registry or database (errors, stubs, filters, one-shot syncs between local layouts; not
    # the slow-callback one, which waits ~9 s and tests nothing of the install).
    run_tests "$root/target/py-source" tests/test_errors.py tests/test_stubs.py \
        tests/test_tag_filter.py tests/test_oneshot.py \
        --deselect tests/test_oneshot.py::test_a_blocked_or_slow_callback_stalls_nothing
    # The stubs as a typed caller meets them, from the installed package.
    (cd bindings-python && "$root/target/py-source/bin/python" -m mypy --strict \
        --cache-dir "$root/target/mypy-cache" tests/typed/usage.py)
)

section "Node: npm pack (release addon via napi build) + node --test + tsc; npm install of the tarball and of the directory into new projects"
(
    cd bindings-node
    # What a registry would get: npm pack's prepack builds the release addon (napi build
    # --release, which also regenerates index.js and index.d.ts), then packs it.
    npm_out="$root/target/npm"
    rm -rf "$npm_out" && mkdir -p "$npm_out"
    # index.js and index.d.ts are generated by the build and checked in: they must not drift.
    generated="$root/target/napi-generated"
    rm -rf "$generated" && mkdir -p "$generated" && cp index.js index.d.ts "$generated/"
    npm pack --pack-destination "$npm_out" --loglevel warn >/dev/null
    for f in index.js index.d.ts; do
        if ! diff -u "$generated/$f" "$f"; then
            echo "bindings-node/$f was out of date; the build regenerated it: commit it" >&2
            exit 1
        fi
    done
    node --test __test__/
    # index.d.ts as a TypeScript user meets it (typescript is a dev dependency, already in npm ci).
    npx tsc -p __test__/types

    # The tarball holds exactly the loader, the types, the install step and the addon.
    tarball="$(compgen -G "$npm_out/regmirror-*.tgz")"
    contents="$(tar tzf "$tarball" | sort | tr '\n' ' ')"
    expected="package/index.d.ts package/index.js package/install.js package/package.json package/regmirror.linux-x64-gnu.node "
    if [ "$contents" != "$expected" ]; then
        echo "npm pack packed [$contents], expected [$expected]" >&2
        exit 1
    fi
    ls -l "$tarball"

    # A new project requiring and importing the package, and type-checking against it.
    try_package() {
        local project="$1"
        node --input-type=commonjs -e "
            const assert = require('node:assert/strict')
            const { TagFilter } = require('regmirror')
            assert.deepEqual(new TagFilter('v3.*').select(['v3.1', 'v4']), ['v3.1'])
            console.log('require(\'regmirror\') works in $project')" &&
            node --input-type=module -e "
            import { TagFilter, ErrorCode } from 'regmirror'
            if (ErrorCode.InvalidPattern !== 'InvalidPattern' || !new TagFilter('a').matches('a')) process.exit(1)"
    }
    new_project() {
        rm -rf "$1" && mkdir -p "$1" && (cd "$1" && npm init -y >/dev/null)
    }
    new_project "$npm_out/from-tarball"
    (cd "$npm_out/from-tarball" && npm install --no-audit --no-fund "$tarball" && try_package from-tarball)

    # A clean clone has no addon: npm install <path> builds it (here cargo finds the release
    # build above, so it only copies the library).
    rm -f ./*.node
    new_project "$npm_out/from-path"
    (cd "$npm_out/from-path" && npm install --no-audit --no-fund --foreground-scripts "$root/bindings-node" &&
        try_package from-path)
    [ -f regmirror.linux-x64-gnu.node ]

    # Without the addon and without cargo, the install step says what is missing.
    mv regmirror.linux-x64-gnu.node "$npm_out/addon.node"
    if PATH=/usr/bin:/bin node install.js 2>"$npm_out/no-cargo.txt"; then
        echo "install.js succeeded without an addon and without cargo" >&2
        exit 1
    fi
    mv "$npm_out/addon.node" regmirror.linux-x64-gnu.node
    grep -q 'cargo was not found on PATH' "$npm_out/no-cargo.txt" || {
        cat "$npm_out/no-cargo.txt" >&2
        exit 1
    }
    cat "$npm_out/no-cargo.txt"
)

section "Versions: the crate, CLI, wheel, npm package and C library all say the workspace version"
version="$(cargo pkgid -p regmirror)"
version="${version##*[@#]}"
agree() {
    if [ "$2" != "$version" ]; then
        echo "$1 says $2, the workspace version (Cargo.toml) is $version" >&2
        exit 1
    fi
    echo "$1: $2"
}
# The binary `cargo test --workspace` built (`cargo run -p regmirror-cli` alone would resolve other
# features and rebuild the engine).
agree "regmirror --version" "$(target/x86_64-unknown-linux-gnu/debug/regmirror --version | cut -d' ' -f2)"
agree "the wheel's file name" "$(basename "$(compgen -G "target/wheels/regmirror-*-manylinux_*.whl")" | cut -d- -f2)"
agree "the sdist's file name" "$(basename "$(compgen -G "target/wheels/regmirror-*.tar.gz")" .tar.gz | cut -d- -f2)"
agree "installed wheel's metadata" "$(target/py310-wheel/bin/python -c 'import importlib.metadata as m; print(m.version("regmirror"))')"
agree "regmirror.__version__" "$(target/py310-wheel/bin/python -c 'import regmirror; print(regmirror.__version__)')"
agree "bindings-node/package.json" "$(node -p "require('./bindings-node/package.json').version")"
agree "bindings-node/package-lock.json" "$(node -p "require('./bindings-node/package-lock.json').version")"
agree "the npm tarball's package.json" "$(cd target/npm/from-tarball && node -p "require('regmirror/package.json').version")"
agree "regmirror.pc" "$(PKG_CONFIG_PATH=target/ctest/prefix/lib/pkgconfig pkg-config --modversion regmirror)"
agree "REGMIRROR_VERSION_* in the installed header" "$(printf '#include <regmirror.h>\nREGMIRROR_VERSION_MAJOR.REGMIRROR_VERSION_MINOR.REGMIRROR_VERSION_PATCH\n' |
    gcc -E -P -I target/ctest/prefix/include/regmirror - | tail -n 1 | tr -d ' ')"
agree "regmirror_version() of the installed library" "$(target/ctest/version | sed -n 's/.* are regmirror //p')"

printf '\n==== all test suites passed in %ss ====\n' "$((SECONDS - started))"
