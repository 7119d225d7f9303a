#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv and install the package into it.
# Usage: source scripts/setup_env.sh [runtime|dev]
# Re-running is cheap: installation is skipped while the requirement files are unchanged.
set -euo pipefail
_va_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_va_profile="${1:-runtime}"
_va_venv="${VISUAL_ANOMALY_VENV:-$_va_root/.venv}"
_va_python="${PYTHON:-python3}"

case "$_va_profile" in
  runtime) _va_reqs="$_va_root/requirements.txt" ;;
  dev) _va_reqs="$_va_root/requirements-dev.txt" ;;
  *) echo "setup_env.sh: unknown profile '$_va_profile' (runtime|dev)" >&2; return 2 2>/dev/null || exit 2 ;;
esac

if [ ! -x "$_va_venv/bin/python" ]; then
  echo "==> creating virtual environment $_va_venv"
  "$_va_python" -m venv "$_va_venv"
fi

_va_stamp="$_va_venv/.visual_anomaly-$_va_profile.sha256"
_va_hash="$(cat "$_va_root"/requirements*.txt "$_va_root/setup.py" "$_va_root/setup.cfg" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$_va_stamp" 2>/dev/null)" != "$_va_hash" ]; then
  echo "==> installing $_va_profile requirements into $_va_venv (first run takes a few minutes)"
  "$_va_venv/bin/python" -m pip install --quiet --upgrade pip 'setuptools>=77.0.3,<80' wheel
  "$_va_venv/bin/python" -m pip install --quiet -r "$_va_reqs"
  "$_va_venv/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e "$_va_root"
  # Editable installs skip data_files: register the package in the venv's ament index and link
  # its share folder to the checkout, as `colcon build --symlink-install` would.
  mkdir -p "$_va_venv/share/ament_index/resource_index/packages" "$_va_venv/share/visual_anomaly"
  touch "$_va_venv/share/ament_index/resource_index/packages/visual_anomaly"
  for _va_item in package.xml launch config models; do
    ln -sfn "$_va_root/$_va_item" "$_va_venv/share/visual_anomaly/$_va_item"
  done
  echo "$_va_hash" > "$_va_stamp"
fi

export PATH="$_va_venv/bin:$PATH"
export VIRTUAL_ENV="$_va_venv"
# rclpy's package index lookups (share/visual_anomaly, message packages) resolve inside the venv.
export AMENT_PREFIX_PATH="$_va_venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
unset _va_item _va_root _va_profile _va_venv _va_python _va_reqs _va_stamp _va_hash
