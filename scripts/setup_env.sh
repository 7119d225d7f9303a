#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv, install the package into it and
# activate it in this shell.
# Usage: source scripts/setup_env.sh [runtime|dev|robot]
# robot: Ubuntu 24.04's library versions (requirements-robot.txt) and the test tools, in .venv-robot.
# Re-running is cheap: installation is skipped while the requirement files are unchanged. The
# installation runs in a process of its own (scripts/install_env.sh): this shell's options stay as
# they were, and a failure returns non-zero instead of closing an interactive shell.

_va_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_va_profile="${1:-runtime}"
_va_venv="$_va_root/.venv"
[ "$_va_profile" = robot ] && _va_venv="$_va_root/.venv-robot"
_va_venv="${VISUAL_ANOMALY_VENV:-$_va_venv}"
if bash "$_va_root/scripts/install_env.sh" "$_va_root" "$_va_profile" "$_va_venv" "${PYTHON:-python3}"; then
  export PATH="$_va_venv/bin:$PATH"
  export VIRTUAL_ENV="$_va_venv"
  # rclpy's package index lookups (share/visual_anomaly, message packages) resolve inside the venv.
  export AMENT_PREFIX_PATH="$_va_venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
  unset _va_root _va_venv _va_profile
else
  _va_status=$?
  echo "setup_env.sh: setting up $_va_venv failed (exit $_va_status); the environment is not activated" >&2
  unset _va_root _va_venv _va_profile
  eval "unset _va_status; return $_va_status 2>/dev/null || exit $_va_status"
fi
