#!/usr/bin/env bash
# Usage: make-test-layout.sh DIR TAG...
# Write a small OCI image layout into DIR (created): one single-platform linux/amd64 image per
# TAG, each with its own config and layer, tagged in index.json the way skopeo writes it. The
# bindings' tests sync from it; the same TAG always gives the same digests.
set -euo pipefail
dir="$1"
shift
mkdir -p "$dir/blobs/sha256"

# Store stdin as a blob; print "<hex> <size>".
blob() {
    local tmp hex size
    tmp="$(mktemp "$dir/blob.XXXXXX")"
    cat >"$tmp"
    hex="$(sha256sum "$tmp" | cut -d' ' -f1)"
    size="$(stat -c %s "$tmp")"
    mv "$tmp" "$dir/blobs/sha256/$hex"
    echo "$hex $size"
}

entries=()
for tag in "$@"; do
    read -r layer layer_size < <(printf 'layer of %s\n' "$tag" | blob)
    read -r config config_size < <(printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$layer" | blob)
    read -r manifest manifest_size < <(printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
        "$config" "$config_size" "$layer" "$layer_size" | blob)
    entries+=("$(printf '{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}' \
        "$manifest" "$manifest_size" "$tag")")
done
printf '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
(IFS=,; printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}' "${entries[*]}") >"$dir/index.json"
