#!/usr/bin/env bash
# Set up the environment with the test tools and run lint plus the whole test suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup_env.sh dev
ruff check .
ruff format --check .
exec python -m pytest "$@"
