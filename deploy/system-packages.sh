#!/usr/bin/env bash
# Debian packages beyond the Python ones, installed only when missing (so running it again costs a
# dpkg query). Add a package as one line of RUNTIME (what segbot itself runs) or TEST_ONLY.
#
#   bash deploy/system-packages.sh           all of them (tests/run.sh)
#   bash deploy/system-packages.sh runtime   what the bot, the workers and `segbot run` use
#                                            (deploy/install.sh, hence `make setup` and `make demo`)
#
# Under CI=true a failed install fails the run; elsewhere it warns: the tests that need the package
# skip, and without tesseract-ocr scale-bar labels are not read (segbot says so on each image).
set -euo pipefail

RUNTIME=(
  tesseract-ocr    # scale-bar labels and printed field widths (imaging/infobar.py, tests/test_infobar.py)
)
TEST_ONLY=(
  chromium         # the Mini App's browser test (tests/test_web_browser.py)
  chromium-driver  # its WebDriver, for selenium
  docker-compose   # a real Compose implementation checks deploy/compose*.yaml (tests/test_ops_deploy.py)
)
case "${1:-all}" in
  runtime) PACKAGES=("${RUNTIME[@]}") ;;
  all) PACKAGES=("${RUNTIME[@]}" "${TEST_ONLY[@]}") ;;
  *) echo "usage: $0 [runtime|all]" >&2; exit 2 ;;
esac

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
  log "warning: $*; the tests that need ${missing[*]} will be skipped (without tesseract-ocr no scale-bar label is read)"
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
