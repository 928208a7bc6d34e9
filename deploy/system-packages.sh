#!/usr/bin/env bash
# Debian packages segbot needs beside its Python wheels: tesseract-ocr (reads scale-bar labels).
# Idempotent: installs only what is missing (apt-get update first). Not root and the packages there:
# nothing to do. Cannot install: a warning, or a failure under CI=true (the tests need them).
set -euo pipefail
PACKAGES=(tesseract-ocr)
log() { printf '[system-packages] %s\n' "$*" >&2; }

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

fail() {
  if [ "${CI:-}" = "true" ]; then
    log "ERROR: $*"
    exit 1
  fi
  log "warning: $* (scale bars will not be read)"
  exit 0
}

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    fail "not root: install ${missing[*]} with: sudo apt-get install -y ${missing[*]}"
  fi
else
  SUDO=()
fi
command -v apt-get >/dev/null 2>&1 || fail "no apt-get here: install ${missing[*]} by hand"
log "installing ${missing[*]}"
"${SUDO[@]}" apt-get update -qq || fail "apt-get update failed"
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" \
  >/dev/null || fail "apt-get install ${missing[*]} failed"
