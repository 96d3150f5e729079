#!/usr/bin/env bash
# The main job: set up, build, and train on the built-in shapes dataset with the bundled plugins.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --target demo
exec build/bin/bulkhead train --config configs/demo.json "$@"
