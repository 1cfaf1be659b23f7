#!/usr/bin/env bash
# Fonts the OCR evaluation set is rendered with (issue 19): Chinese (WenQuanYi Zen Hei and Micro Hei,
# AR PL UMing) and Latin (DejaVu, Liberation), exact Debian versions, unpacked into a cache folder
# without installing anything system-wide (apt-get download + dpkg-deb -x need no root).
# Prints the folder with --path.
set -euo pipefail
DEST=${INFERSTREAM_FONTS:-${XDG_CACHE_HOME:-$HOME/.cache}/inferstream/fonts}
PACKAGES=(
  "fonts-wqy-zenhei=0.9.45-8"
  "fonts-wqy-microhei=0.2.0-beta-3.1"
  "fonts-arphic-uming=0.2.20080216.2-11"
  "fonts-dejavu-core=2.37-6"
  "fonts-liberation2=2.1.5-1"
)
stamp="$DEST/.fetched-$(printf '%s\n' "${PACKAGES[@]}" | sha256sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && apt-get download "${PACKAGES[@]}" >/dev/null 2>&1) || {
    apt-get update -qq >/dev/null 2>&1 || true
    (cd "$work" && apt-get download "${PACKAGES[@]}" >/dev/null)
  }
  mkdir -p "$DEST"
  for deb in "$work"/*.deb; do
    dpkg-deb -x "$deb" "$work/root"
  done
  find "$work/root/usr/share/fonts" \( -name '*.ttf' -o -name '*.ttc' \) -exec cp -f {} "$DEST/" \;
  touch "$stamp"
fi
if [ "${1:-}" = "--path" ]; then echo "$DEST"; else ls "$DEST"; fi
