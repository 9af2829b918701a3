#!/usr/bin/env bash
# Enforces DESIGN.md's import boundary: only the compute packages import
# gotch directly; everything else reaches libtorch through them.
set -euo pipefail
cd "$(dirname "$0")/.."
mod=$(go list -m)
allowed="^$mod/(internal/torch|model|lora)(/|$)"
bad=$(go list -f '{{.ImportPath}} {{join .Imports " "}}' ./... |
  awk -v allowed="$allowed" '$0 ~ /github.com\/sugarme\/gotch/ && $1 !~ allowed {print $1}')
if [ -n "$bad" ]; then
  echo "import boundary: these packages import gotch directly (only internal/torch, model, lora may):" >&2
  echo "$bad" >&2
  exit 1
fi
echo "import boundary: ok"
