#!/usr/bin/env bash
# make demo: the main job on embedded defaults. It grows with herd: today it
# checks the machine and the shipped tiny config; training and scoring join
# as they land.
set -euo pipefail
cd "$(dirname "$0")/.."
herd=bin/herd

echo "== herd doctor"
$herd doctor | grep -E '^(herd|libtorch|gotch|blas|threads|compute|devices?):'

echo "== herd config validate configs/tiny.yaml"
$herd config validate configs/tiny.yaml

echo
echo "demo done: libtorch loaded and checked, configs/tiny.yaml is valid."
echo "next: bin/herd --help"
