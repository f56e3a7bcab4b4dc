#!/usr/bin/env sh
# How the files in vendor/ were obtained: the published npm tarballs of
# preact and htm at pinned versions, checked against the registry's
# integrity, copied as plain ES modules. Run it from anywhere to refresh
# them (needs npm and network); `cargo build` never runs it.
#
# The one change made: hooks.js imports "./preact.js" instead of the bare
# "preact" (a browser without an import map cannot resolve a bare name,
# and an inline import map would need an inline script, which our CSP
# forbids). The source-map comments are dropped (no .map is served).
set -eu
PREACT=11.2.0
HTM=3.1.1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "preact@$PREACT" "htm@$HTM" >/dev/null
mkdir preact htm
tar xzf "preact-$PREACT.tgz" -C preact
tar xzf "htm-$HTM.tgz" -C htm
out="$here/vendor"
mkdir -p "$out"
strip_map() { sed '/^\/\/# sourceMappingURL=/d' "$1"; }
strip_map preact/package/dist/preact.mjs >"$out/preact.js"
strip_map preact/package/hooks/dist/hooks.mjs | sed 's|from"preact"|from"./preact.js"|' >"$out/hooks.js"
strip_map htm/package/dist/htm.mjs >"$out/htm.js"
cp preact/package/LICENSE "$out/LICENSE-preact"
cp htm/package/LICENSE "$out/LICENSE-htm"
printf 'preact %s (MIT)\nhtm %s (Apache-2.0)\n' "$PREACT" "$HTM" >"$out/VERSIONS"
grep -q 'from"./preact.js"' "$out/hooks.js" || { echo "hooks.js: import not rewritten" >&2; exit 1; }
