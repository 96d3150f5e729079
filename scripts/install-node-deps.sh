#!/bin/sh
# Installs the JavaScript dependencies, each folder from its package-lock.json when it is there:
#   plugin-sdk/node   the JavaScript plugin SDK's (zeromq, @msgpack/msgpack)
#   tests/web         the web view's browser test (puppeteer-core, which drives Debian's chromium
#                     and downloads no browser of its own)
set -eu
here=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
# Puppeteer's own install step would fetch a Chrome; puppeteer-core has none, and this makes sure.
export PUPPETEER_SKIP_DOWNLOAD=1

install() {  # FOLDER CHECK: npm ci in FOLDER unless node can already run CHECK there
  cd "$here/$1"
  if [ -d node_modules ] && node -e "$2" 2>/dev/null; then return 0; fi
  if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund
  else
    npm install --no-audit --no-fund
  fi
  node -e "$2"
}

install plugin-sdk/node "require('zeromq'); require('@msgpack/msgpack'); console.log('plugin-sdk/node: dependencies ready')"
install tests/web "require('puppeteer-core'); console.log('tests/web: dependencies ready')"
