#!/usr/bin/env bash
# Set up the environment and run the main job (see README). Extra arguments go to the demo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup_env.sh runtime
exec visual-anomaly-demo "$@"
