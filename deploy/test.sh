#!/usr/bin/env bash
# The test command: builds .venv if needed, checks style, then runs the whole suite
# (unit, actor, end-to-end). Extra arguments go to pytest, e.g. `-m "not e2e"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# pytest exits 5 when it collected no test: that is a failure here too.
exec .venv/bin/python -m pytest "$@"
