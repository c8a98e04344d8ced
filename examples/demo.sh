#!/usr/bin/env bash
# regmirror, end to end, offline: two real registries on 127.0.0.1, a source seeded with
# generated multi-arch images, and `regmirror sync` keeping a mirror of it — first copy, a no-op
# rerun, narrowed patterns pruning, a dry run, an `oci:` layout with a platform filter.
#
#   examples/demo.sh            (from anywhere; installs docker-registry if missing)
#
# Everything it starts stops when it exits, and its files live in a temp dir that is removed.
set -euo pipefail

cd "$(dirname "$0")/.."

# Headings in bold on a terminal; plain when the output goes to a file or a pipe.
if [ -t 1 ]; then
    say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
    say() { printf '\n== %s\n' "$*"; }
fi
# Echo a command as one would type it (arguments with shell characters in single quotes), then run it.
run() {
    local shown='$' arg
    for arg in "$@"; do
        if [[ "$arg" =~ [^A-Za-z0-9_./:=,@+-] ]]; then shown+=" '$arg'"; else shown+=" $arg"; fi
    done
    printf '%s\n' "$shown"
    "$@"
}

# --- what the demo needs -------------------------------------------------------------------
if ! command -v docker-registry >/dev/null 2>&1; then
    say "installing docker-registry (CNCF distribution) from apt"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq docker-registry >/dev/null
fi
for tool in cargo python3; do
    command -v "$tool" >/dev/null 2>&1 || { echo "demo: $tool is required" >&2; exit 1; }
done

say "building regmirror and the image seeder"
# The JSON build messages name the executables, wherever the target directory is.
binaries=$(cargo build -q -p regmirror-cli -p regmirror-tests --bin regmirror --bin seed \
    --message-format=json-render-diagnostics | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["target"]["name"], m["executable"])')
REGMIRROR=$(awk '$1 == "regmirror" {print $2}' <<<"$binaries")
SEED=$(awk '$1 == "seed" {print $2}' <<<"$binaries")
regmirror() { "$REGMIRROR" "$@"; }
seed() { "$SEED" "$@"; }

# --- two registries on loopback --------------------------------------------------------------
WORK=$(mktemp -d -t regmirror-demo.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_registry() { # NAME PORT
    mkdir -p "$WORK/$1"
    cat >"$WORK/$1/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/$1/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$2
  secret: regmirror-demo-$1
EOF
    docker-registry serve "$WORK/$1/config.yml" >"$WORK/$1/log" 2>&1 &
    PIDS+=("$!")
    python3 - "$2" <<'EOF' || { echo "demo: registry on port $2 did not start:" >&2; cat "$WORK/$1/log" >&2; exit 1; }
import sys, time, urllib.request
for _ in range(200):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/v2/", timeout=1)
        sys.exit(0)
    except Exception:
        time.sleep(0.05)
sys.exit(1)
EOF
}

# Tags and digests of a repository, read straight from the registry API (not through regmirror).
show_tags() { # HOST REPO
    python3 - "$1" "$2" <<'EOF'
import json, sys, urllib.request
host, repo = sys.argv[1], sys.argv[2]
try:
    tags = json.load(urllib.request.urlopen(f"http://{host}/v2/{repo}/tags/list"))["tags"] or []
except urllib.error.HTTPError:
    tags = []
accept = ", ".join([
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json"])
print(f"  {host}/{repo}: {len(tags)} tag{'' if len(tags) == 1 else 's'}")
for tag in sorted(tags):
    req = urllib.request.Request(f"http://{host}/v2/{repo}/manifests/{tag}", method="HEAD",
                                 headers={"Accept": accept})
    r = urllib.request.urlopen(req)
    kind = "index" if "index" in r.headers["Content-Type"] or "list" in r.headers["Content-Type"] else "image"
    print(f"    {tag:<10} {r.headers['Docker-Content-Digest']}  ({kind})")
EOF
}

SRC_PORT=$(free_port)
start_registry source "$SRC_PORT"
DST_PORT=$(free_port)
while [ "$DST_PORT" = "$SRC_PORT" ]; do DST_PORT=$(free_port); done
start_registry mirror "$DST_PORT"
SRC=127.0.0.1:$SRC_PORT
DST=127.0.0.1:$DST_PORT
say "registries running: source $SRC, mirror $DST (plain HTTP, loopback only)"

say "seeding the source with multi-arch images (linux/amd64 + linux/arm64, 1 MiB layers)"
run seed --registry "http://$SRC" --repo library/app --layer-size 1048576 \
    --tags v1.0,v1.1,v1.2,v2.0-rc1,v2.0,latest --arch amd64,arm64
show_tags "$SRC" library/app

# Plain-HTTP registries need --*-tls-verify=false, as with skopeo.
INSECURE=(--src-tls-verify=false --dest-tls-verify=false)

say "1. what would a mirror of v1.* and v2.* without release candidates do? (--dry-run)"
run regmirror sync "$SRC/library/app" --to "$DST/mirror/app" --tags 'v1.*,v2.*,!*-rc*' \
    "${INSECURE[@]}" --dry-run

say "2. mirror it"
run regmirror sync "$SRC/library/app" --to "$DST/mirror/app" --tags 'v1.*,v2.*,!*-rc*' \
    "${INSECURE[@]}"
show_tags "$DST" mirror/app

say "3. again: everything is current, no blob moves (report as JSON)"
run regmirror sync "$SRC/library/app" --to "$DST/mirror/app" --tags 'v1.*,v2.*,!*-rc*' \
    "${INSECURE[@]}" --json

say "4. narrow the patterns to v2.*: the mirror holds only what it selects, so v1.* are pruned"
run regmirror sync "$SRC/library/app" --to "$DST/mirror/app" --tags 'v2.*,!*-rc*' \
    "${INSECURE[@]}"
show_tags "$DST" mirror/app

say "5. into an OCI layout directory, arm64 only (the index keeps its digest: a sparse index)"
run regmirror sync "$SRC/library/app" --to "oci:$WORK/layout" --tags 'latest' --arch arm64 \
    --src-tls-verify=false
echo "index.json of the layout:"
python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1])), indent=2))' \
    "$WORK/layout/index.json"

say "6. a mistake is named, and exits 2"
set +e
run regmirror sync "$SRC/library/app" --to "$DST/mirror/app" --tags 'v1.[12' "${INSECURE[@]}"
echo "exit status $?"
set -e

say "done: the registries stop and $WORK is removed"
