#!/usr/bin/env bash
# Installs what Bulkhead needs on Debian 12 (only what is missing), then configures and builds.
# Used by scripts/run-demo.sh and scripts/run-tests.sh; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake pkg-config ccache git
  libtorch-dev libzmq3-dev cppzmq-dev libmsgpack-cxx-dev libboost-dev libboost-filesystem-dev
  libspdlog-dev nlohmann-json3-dev libvalijson-dev libcli11-dev libseccomp-dev libstb-dev
  libicu-dev libyaml-cpp-dev libwebp-dev
  libgtest-dev libgmock-dev libbenchmark-dev bubblewrap
  libgloo-dev  # LibTorch c10d's Gloo process group needs its headers (bulkhead train --nproc)
  libcpp-httplib-dev  # the web view's HTTP server (bulkhead serve, train --web)
  chromium  # the web view's end-to-end test runs the page in it, headless (tests/web)
  python3 python3-zmq python3-msgpack python3-pil python3-jsonschema
  python3-torch python3-colorama python3-numpy  # what EveryDream2's plugins import
  python3-optuna  # default_method's "search": "optuna" (it falls back to random search without it)
)
# Node.js may already come from elsewhere (its own npm included, which Debian's npm conflicts with):
# ask apt for it only when the commands are missing.
command -v node >/dev/null && command -v npm >/dev/null || PACKAGES+=(nodejs npm)

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

bash scripts/install-node-deps.sh

# CI builds with warnings as errors (BULKHEAD_WERROR); a user's build only shows them.
werror=OFF
[ -n "${CI:-}" ] && werror=ON
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBULKHEAD_WERROR="$werror"
# Arguments go to the build: scripts/run-demo.sh builds only what the demo runs (--target demo).
cmake --build build -j"$(nproc)" "$@"
