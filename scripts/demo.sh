#!/usr/bin/env bash
# make demo: the main job on embedded defaults. Checks the machine, makes
# the tiny model and data set configs/tiny.yaml names, trains a LoRA adapter
# on it in single-node mode, scores the eval set with and without the
# adapter, and says where everything is.
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

echo "== herd train configs/tiny.yaml"
rm -rf artifacts/tiny
$herd train configs/tiny.yaml
adapter=$(ls -d artifacts/tiny/checkpoints/checkpoint-* | sort -t- -k2 -n | tail -1)

echo "== herd score: eval set, base model and with the adapter"
$herd score --model data/models/tiny --data data/tiny/eval.jsonl --out artifacts/tiny/score-base 2>/dev/null > artifacts/tiny/score-base.txt
$herd score --model data/models/tiny --adapter "$adapter" --data data/tiny/eval.jsonl --out artifacts/tiny/score-adapter 2>/dev/null > artifacts/tiny/score-adapter.txt
base=$(grep '"loss"' artifacts/tiny/score-base.txt | tr -dc '0-9.')
tuned=$(grep '"loss"' artifacts/tiny/score-adapter.txt | tr -dc '0-9.')

echo
echo "demo done:"
echo "  trained a LoRA adapter on data/tiny/train.jsonl for 30 steps: $adapter"
echo "  eval loss (token-weighted): base model $base, with the adapter $tuned"
echo "  predictions and metrics: artifacts/tiny/score-adapter/{predictions.jsonl,metrics.json}"
echo "next: bin/herd --help, docs/, configs/"
