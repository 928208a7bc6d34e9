#!/usr/bin/env bash
# The whole test suite, slow tests included; PostgreSQL and Redis are required when CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/system-packages.sh  # tesseract-ocr for the scale-bar tests (fails under CI=true if it cannot)
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
