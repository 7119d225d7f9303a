#!/usr/bin/env bash
# Install the project into a virtual environment (run by setup_env.sh, in a process of its own so
# that its strict error handling never reaches the user's shell).
# Usage: install_env.sh ROOT PROFILE VENV PYTHON
set -euo pipefail
root="$1" profile="$2" venv="$3" python="$4"
case "$profile" in
  runtime) reqs=(-r "$root/requirements.txt") ;;
  dev) reqs=(-r "$root/requirements-dev.txt") ;;
  robot) reqs=(-r "$root/requirements-robot.txt" -r "$root/requirements-test.txt") ;;
  *) echo "setup_env.sh: unknown profile '$profile' (runtime|dev|robot)" >&2; exit 2 ;;
esac

if [ ! -x "$venv/bin/python" ]; then
  echo "==> creating virtual environment $venv"
  "$python" -m venv "$venv"
fi
stamp="$venv/.visual_anomaly-$profile.sha256"
hash="$(cat "$root"/requirements*.txt "$root/setup.py" "$root/setup.cfg" "$root/scripts/install_env.sh" \
  | sha256sum | cut -d' ' -f1)"
[ "$(cat "$stamp" 2>/dev/null)" = "$hash" ] && exit 0

echo "==> installing $profile requirements into $venv (first run takes a few minutes)"
"$venv/bin/python" -m pip install --quiet --upgrade pip 'setuptools>=77.0.3,<80' wheel
"$venv/bin/python" -m pip install --quiet "${reqs[@]}"
"$venv/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e "$root"

# Editable installs skip data_files. Lay the venv out as a ROS prefix, as `colcon build
# --symlink-install` would: the package in the ament index, share/visual_anomaly/ as real folders of
# per-file links (ros2 launch does not follow linked folders when it looks for a launch file) and the
# executables in lib/visual_anomaly/ (where launch_ros looks for them).
share="$venv/share/visual_anomaly"
mkdir -p "$venv/share/ament_index/resource_index/packages" "$venv/lib/visual_anomaly"
touch "$venv/share/ament_index/resource_index/packages/visual_anomaly"
rm -rf "$share" && mkdir -p "$share"
ln -s "$root/package.xml" "$share/package.xml"
(cd "$root" && find launch config models -type f ! -name '*.pyc' ! -path '*/__pycache__/*') | while read -r file; do
  mkdir -p "$share/$(dirname "$file")"
  ln -s "$root/$file" "$share/$file"
done
for executable in "$venv"/bin/visual-anomaly-*; do
  ln -sfn "$executable" "$venv/lib/visual_anomaly/$(basename "$executable")"
done
echo "$hash" > "$stamp"
