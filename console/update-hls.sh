#!/usr/bin/env bash
# Vendors hls.js into console/vendor from the npm registry, so the console needs no CDN at run time.
#   console/update-hls.sh [VERSION]    (default: the version in console/vendor/VERSION)
# Takes dist/hls.min.js and the LICENSE from `npm pack hls.js@VERSION`, and records the version.
set -euo pipefail
vendor="$(cd "$(dirname "$0")" && pwd)/vendor"
version="${1:-$(cat "$vendor/VERSION" 2>/dev/null || echo 1.7.4)}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cd "$work"
tarball="$(npm pack --silent "hls.js@$version")"
tar -xzf "$tarball"
test -s package/dist/hls.min.js || { echo "hls.js@$version has no dist/hls.min.js" >&2; exit 1; }
mkdir -p "$vendor"
cp package/dist/hls.min.js "$vendor/hls.min.js"
cp package/LICENSE "$vendor/hls.js-LICENSE"
echo "$version" >"$vendor/VERSION"
echo "vendored hls.js $version ($(wc -c <"$vendor/hls.min.js") bytes) into $vendor"
