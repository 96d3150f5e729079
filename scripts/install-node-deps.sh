#!/bin/sh
# Installs the JavaScript plugin SDK's dependencies (zeromq, @msgpack/msgpack) into
# plugin-sdk/node/node_modules, from package-lock.json when it is there.
set -eu
here=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
cd "$here/plugin-sdk/node"
check="require('zeromq'); require('@msgpack/msgpack'); console.log('plugin-sdk/node: dependencies ready')"
if [ -d node_modules ] && node -e "$check" 2>/dev/null; then exit 0; fi
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund
else
  npm install --no-audit --no-fund
fi
node -e "$check"
