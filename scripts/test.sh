#!/usr/bin/env bash
# Set up everything (test tools included) and run the whole test suite: unit, integration (real models end to
# end) and browser tests. Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not integration"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
mkdir -p artifacts
exec .venv/bin/python -m pytest -ra "$@"
