#!/usr/bin/env bash
# Run lint and the whole test suite in .venv (the newest libraries), then every test a robot's install
# can run in .venv-robot (Ubuntu 24.04's library versions, requirements-robot.txt); each lane sets up
# its environment first. Extra arguments go to pytest in both lanes. Fails when either lane fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
status=0
(source scripts/setup_env.sh dev && ruff check . && ruff format --check . && python -m pytest "$@") || status=$?
echo "==> robot lane: Ubuntu 24.04's library versions in .venv-robot (tests marked off_robot are skipped)"
(source scripts/setup_env.sh robot && python -m pytest --robot-lane "$@") || status=$?
exit "$status"
