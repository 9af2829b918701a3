#!/usr/bin/env bash
# make demo: the main job on embedded defaults. It grows with herd: today it
# checks the machine, makes the tiny model and data set configs/tiny.yaml
# names, validates the config and times its training step; `herd train`
# and `herd score` join as they land.
set -euo pipefail
cd "$(dirname "$0")/.."
herd=bin/herd

echo "== herd doctor"
$herd doctor | grep -E '^(herd|libtorch|gotch|blas|threads|compute|devices?):'

echo "== herd model init-tiny (configs/tiny.yaml's model and data)"
if [ -f data/models/tiny/config.json ] && [ -f data/tiny/train.jsonl ]; then
  echo "data/models/tiny and data/tiny exist; keeping them"
else
  $herd model init-tiny --out data/models/tiny --sample-data data/tiny
fi

echo "== herd config validate configs/tiny.yaml"
$herd config validate configs/tiny.yaml

echo "== herd bench train --config configs/tiny.yaml (20 LoRA steps on random tokens)"
$herd bench train --config configs/tiny.yaml --steps 20 --warmup 3 |
  grep -E '"(tokens_per_sec|step_ms_median|rss_peak_bytes)"'

echo
echo "demo done: libtorch loaded and checked; tiny model in data/models/tiny, data in data/tiny;"
echo "configs/tiny.yaml is valid and its LoRA training step runs (figures above)."
echo "next: bin/herd --help"
