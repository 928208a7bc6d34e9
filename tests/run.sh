#!/usr/bin/env bash
# The whole test suite, slow tests included; PostgreSQL and Redis are required when CI=true.
# The architecture contract (pyproject.toml [tool.importlinter]) first: a back-edge fails the run;
# then the typed job contracts ([tool.mypy]): a misspelt job param or notice field fails it too.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/lint-imports --no-logo
.venv/bin/mypy
bash deploy/system-packages.sh  # Debian packages some tests need: tesseract-ocr, chromium (+ driver)
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
