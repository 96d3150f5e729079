#!/usr/bin/env bash
# The whole test suite: set up, build, then every test (C++, Python, JavaScript) through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cd build
ctest --output-on-failure -j"$(nproc)" --timeout 900 "$@"
