#!/usr/bin/env bash
# The test command: builds .venv if needed, checks style, then runs the whole suite
# (unit, actor, end-to-end). Extra arguments go to pytest, e.g. `-m "not e2e"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh
# The metrics tests scrape with a real Prometheus server (Debian's package).
if ! command -v prometheus >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# pytest exits 5 when it collected no test: that is a failure here too.
exec .venv/bin/python -m pytest "$@"
