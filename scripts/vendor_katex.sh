#!/usr/bin/env bash
# Re-vendor KaTeX (MIT) from the npm registry into the web page's static folder.
#
# The vendored files are committed, so the page renders math offline right after `pip install`;
# run this only to move to another KaTeX version. Only katex.min.js, katex.min.css, the woff2
# fonts and the licence are kept: every browser that runs the page reads woff2, so the woff/ttf
# fallbacks the stylesheet also lists are never requested.
set -euo pipefail
KATEX_VERSION="${KATEX_VERSION:-0.19.1}"
cd "$(dirname "$0")/.."
dest="texscribe/server/static/vendor/katex"
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT

(cd "$build" && npm pack --silent "katex@${KATEX_VERSION}" >/dev/null && tar xzf "katex-${KATEX_VERSION}.tgz")
rm -rf "$dest"
mkdir -p "$dest/fonts"
cp "$build/package/dist/katex.min.js" "$build/package/dist/katex.min.css" "$build/package/LICENSE" "$dest/"
cp "$build/package/dist/fonts/"*.woff2 "$dest/fonts/"
echo "$KATEX_VERSION" >"$dest/VERSION"
echo "vendored KaTeX $KATEX_VERSION into $dest ($(du -sh "$dest" | cut -f1))"
