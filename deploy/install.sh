#!/usr/bin/env bash
# Sets up .venv from nothing: CPU torch (or a GPU one), mmcv (cached wheel, shared prebuilt, or built
# from source), then segbot and its pinned dependencies. Safe to run again: it reuses what is there.
#
#   bash deploy/install.sh            CPU install (torch==2.13.0)
#   SEGBOT_TORCH="torch==2.5.1 --index-url https://download.pytorch.org/whl/cu124" bash deploy/install.sh
#                                     GPU host: any CUDA torch; mmcv is then built against it (CUDA ops)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
TORCH_SPEC=${SEGBOT_TORCH:-torch==2.13.0}
MMCV_VERSION=2.1.0
CACHE_ROOT=${SEGBOT_WHEEL_CACHE:-$HOME/.cache/segbot/wheels}
SHARED_WHEELS=${SEGBOT_SHARED_WHEELS:-../shared/wheels}
log() { printf '[install] %s\n' "$*" >&2; }

"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), "segbot needs Python 3.11"'
# what segbot runs besides Python: tesseract-ocr reads scale-bar labels (the tests add their own)
bash deploy/system-packages.sh runtime
[ -x .venv/bin/python ] || { log "creating .venv"; "$PYTHON" -m venv .venv; }
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip "setuptools>=68,<82" wheel ninja "numpy>=1.26,<3"

# shellcheck disable=SC2086  # TORCH_SPEC may carry pip options such as --index-url
"${PIP[@]}" install $TORCH_SPEC
TORCH_TAG=$(.venv/bin/python -c 'import torch; print(torch.__version__.replace("+", "_"))')
CACHE="$CACHE_ROOT/torch-$TORCH_TAG"
mkdir -p "$CACHE"

mmcv_ok() {
  .venv/bin/python - <<'PY' 2>/dev/null
import importlib.metadata as md, torch
assert md.version("mmcv") == "2.1.0"
from mmcv.ops import nms  # the compiled ops load against this torch
PY
}

if mmcv_ok; then
  log "mmcv $MMCV_VERSION already installed and loads"
else
  wheel=$(ls "$CACHE"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$wheel" ] && [ "$TORCH_TAG" = "2.13.0_cpu" ] && [ -f "$SHARED_WHEELS/SHA256SUMS" ]; then
    if (cd "$SHARED_WHEELS" && sha256sum --quiet -c SHA256SUMS) 2>/dev/null; then
      log "using the prebuilt mmcv wheel from $SHARED_WHEELS"
      cp "$SHARED_WHEELS"/mmcv-"$MMCV_VERSION"-cp311-*.whl "$CACHE"/
      wheel=$(ls "$CACHE"/mmcv-"$MMCV_VERSION"-*.whl | head -n1)
    else
      log "shared mmcv wheel does not match its checksum; ignoring it"
    fi
  fi
  if [ -z "$wheel" ]; then
    log "building mmcv $MMCV_VERSION from source against torch $TORCH_TAG (15+ minutes on 2 cores)"
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} "${PIP[@]}" wheel --no-build-isolation --no-deps \
      "mmcv==$MMCV_VERSION" -w "$CACHE"
    wheel=$(ls "$CACHE"/mmcv-"$MMCV_VERSION"-*.whl | head -n1)
  fi
  "${PIP[@]}" install --no-deps --force-reinstall "$wheel"
  "${PIP[@]}" install "mmcv==$MMCV_VERSION"   # its pure-Python requirements
fi

"${PIP[@]}" install -e ".[dev]"
# The translations: core/locale/*/LC_MESSAGES/segbot.po -> .mo (not in git; docs/bot.md)
.venv/bin/pybabel -q compile -d core/locale -D segbot
.venv/bin/segbot --version >/dev/null
log "ready: .venv/bin/segbot"
