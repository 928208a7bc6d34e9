#!/usr/bin/env bash
# Debian packages the tests need beyond the Python ones, installed only when missing (so running
# it again costs a dpkg query). tests/run.sh calls it. Add a package as one line of PACKAGES.
# Under CI=true a failed install fails the run; elsewhere it warns and the tests that need the
# package skip.
set -euo pipefail

PACKAGES=(
  tesseract-ocr    # scale-bar labels (imaging/infobar.py, tests/test_infobar.py)
  chromium         # the Mini App's browser test (tests/test_web_browser.py)
  chromium-driver  # its WebDriver, for selenium
  docker-compose   # a real Compose implementation checks deploy/compose*.yaml (tests/test_ops_deploy.py)
)

log() { printf '[system-packages] %s\n' "$*" >&2; }
missing=()
for package in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

case "${CI:-}" in 1 | true | TRUE | True | yes) in_ci=true ;; *) in_ci=false ;; esac
give_up() {
  if $in_ci; then
    log "$* - CI needs ${missing[*]}"
    exit 1
  fi
  log "warning: $*; the tests that need ${missing[*]} will be skipped"
  exit 0
}

command -v apt-get >/dev/null || give_up "no apt-get here to install ${missing[*]}"
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo=(sudo -n); else give_up "not root"; fi
fi
log "installing ${missing[*]}"
"${sudo[@]}" apt-get update -qq || give_up "apt-get update failed"
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null \
  || give_up "apt-get install ${missing[*]} failed"
