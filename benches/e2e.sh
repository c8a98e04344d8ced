#!/bin/sh
# The end-to-end comparison of `regmirror sync` with `skopeo sync --all` (benches/README.md).
# Builds regmirror and the harness in release mode, then runs the harness; arguments go to it,
# e.g. `benches/e2e.sh --dataset standard --link slow --reps 3`. Everything runs on 127.0.0.1.
set -eu
cd "$(dirname "$0")/.."
for tool in docker-registry skopeo; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "e2e: $tool is not installed: sudo apt-get install -y docker-registry skopeo" >&2
        exit 2
    fi
done
cargo build --release -p regmirror-cli --bin regmirror
exec cargo run --release -p regmirror-benches --bin e2e -- "$@"
