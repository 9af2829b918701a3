#!/usr/bin/env bash
# Lists the packages that do not link libtorch (no gotch in their
# dependencies): they build anywhere and are tested with -race.
set -euo pipefail
cd "$(dirname "$0")/.."
go list -f '{{.ImportPath}} {{join .Deps " "}}' ./... | awk '!/github.com\/sugarme\/gotch/ {print $1}'
