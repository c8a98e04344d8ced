#!/usr/bin/env bash
# Set the version of everything regmirror ships: the workspace version in Cargo.toml is the one
# source; this copies it where a tool cannot read Cargo.toml itself (the npm package and its
# lock file and generated loader, the C header's REGMIRROR_VERSION_* macros) and updates
# Cargo.lock. The crates, the wheel (maturin reads Cargo.toml), `regmirror --version`,
# regmirror_version() and regmirror.pc take it from Cargo.toml at build time. scripts/test.sh
# checks that all of them agree.
# Usage: scripts/set-version.sh 0.2.0
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

new="${1:-}"
if ! [[ "$new" =~ ^([0-9]+)\.([0-9]+)\.([0-9]+)$ ]]; then
    echo "usage: $0 MAJOR.MINOR.PATCH (for example 0.2.0); got '${new}'" >&2
    exit 2
fi
major="${BASH_REMATCH[1]}" minor="${BASH_REMATCH[2]}" patch="${BASH_REMATCH[3]}"
old="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)"

sed -i "/^\[workspace.package\]/,/^\[/s/^version = \".*\"/version = \"$new\"/" Cargo.toml
cargo update --workspace --quiet
(cd bindings-node && npm version "$new" --no-git-tag-version --allow-same-version >/dev/null)
# What `napi build` would regenerate: the loader checks the per-platform packages' version.
sed -i "s/'$old'/'$new'/g; s/expected $old but/expected $new but/g" bindings-node/index.js
sed -i -e "s/^pub const REGMIRROR_VERSION_MAJOR: u32 = .*;/pub const REGMIRROR_VERSION_MAJOR: u32 = $major;/" \
    -e "s/^pub const REGMIRROR_VERSION_MINOR: u32 = .*;/pub const REGMIRROR_VERSION_MINOR: u32 = $minor;/" \
    -e "s/^pub const REGMIRROR_VERSION_PATCH: u32 = .*;/pub const REGMIRROR_VERSION_PATCH: u32 = $patch;/" \
    ffi/src/version.rs
(cd ffi && cbindgen --quiet --config cbindgen.toml --output include/regmirror.h)
echo "version $old -> $new; review with git diff, then run scripts/test.sh"
