#!/usr/bin/env bash
# Run lint and the whole test suite in .venv (the newest libraries), then every test a robot's install
# can run in .venv-robot (Ubuntu 24.04's library versions, requirements-robot.txt); each lane sets up
# its environment first. Extra arguments go to pytest in both lanes. Fails when either lane fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
status=0
(source scripts/setup_env.sh dev) || status=$?
# The robot lane's environment is set up while the main lane's tests run: they keep about one of two
# cores busy, and installing is mostly the other. With VISUAL_ANOMALY_VENV both lanes share one
# environment, so its set-up waits its turn.
robot_log="$(mktemp "${TMPDIR:-/tmp}/visual_anomaly-robot-setup.XXXXXX")"
trap 'rm -f "$robot_log"' EXIT
robot_setup=''
if [ "$status" = 0 ] && [ -z "${VISUAL_ANOMALY_VENV:-}" ]; then
  (source scripts/setup_env.sh robot) >"$robot_log" 2>&1 &
  robot_setup=$!
fi
[ "$status" = 0 ] && { (source scripts/setup_env.sh dev && ruff check . && ruff format --check . && python -m pytest "$@") || status=$?; }
echo "==> robot lane: Ubuntu 24.04's library versions in .venv-robot (tests marked off_robot are skipped)"
if [ -n "$robot_setup" ]; then
  wait "$robot_setup" || echo "==> setting up .venv-robot in the background failed; trying again:"
  cat "$robot_log"
fi
(source scripts/setup_env.sh robot && python -m pytest --robot-lane "$@") || status=$?
exit "$status"
