#!/usr/bin/env bash
# Opens URL in headless Chromium, as a person's browser would, and writes what it shows:
# OUT.html (the document after rendering) and OUT.png (a screenshot).
# usage: render.sh URL OUT
set -euo pipefail
url="$1"
out="$2"
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
# As root Chromium needs --no-sandbox; the background-networking flags keep it off the
# closed network, which it would otherwise try at every start.
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
  --disable-background-networking --disable-component-update --disable-sync
  --disable-default-apps --hide-scrollbars --user-data-dir="$profile"
  --window-size=900,1500)
timeout 60 chromium "${flags[@]}" --dump-dom "$url" > "$out.html" 2> "$out.chromium.log"
timeout 60 chromium "${flags[@]}" --screenshot="$out.png" "$url" >> "$out.chromium.log" 2>&1
test -s "$out.html"
test -s "$out.png"
