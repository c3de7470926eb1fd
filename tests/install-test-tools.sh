#!/usr/bin/env bash
# Tools the tests drive for real: Debian's Chromium (for Playwright), the Cosmos DB REST server and Azurite (npm).
# Idempotent and quiet when everything is already there.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v chromium >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser tests..."
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

if [ ! -d servers/node_modules/@vercel/cosmosdb-server ] || [ ! -d servers/node_modules/azurite ]; then
  echo "installing the Cosmos DB and Azure queue test servers (npm)..."
  (cd servers && npm ci --silent --no-audit --no-fund)
fi
