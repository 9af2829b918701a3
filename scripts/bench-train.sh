#!/usr/bin/env bash
# herd's LoRA training step against PyTorch eager on the same libtorch, the
# same model, batch shape and thread count, in one run. Prints one JSON
# object with both results and the ratio (herd step time / PyTorch's).
#   usage: scripts/bench-train.sh [STEPS] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-200}
threads=${2:-$(nproc)}
herd=${HERD:-bin/herd}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
model=data/models/tiny
[ -f "$model/config.json" ] || $herd model init-tiny --out "$model" >/dev/null
# configs/tiny.yaml's step: micro-batch 4, 64 tokens, LoRA r 8 on q_proj, v_proj.
ours=$($herd bench train --config configs/tiny.yaml --set model.path="$model" --set training.threads="$threads" --steps "$steps" --warmup 20)
theirs=$(/usr/bin/python3 tests/oracle/llama/bench_train.py "$model" --r 8 --alpha 16 --targets q_proj,v_proj \
  --micro 4 --seq 64 --steps "$steps" --warmup 20 --threads "$threads")
/usr/bin/python3 - "$ours" "$theirs" <<'PY'
import json, sys
ours, theirs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(json.dumps({"bench": "train-step", "herd": ours, "pytorch": theirs,
                  "ratio_step_time": ours["step_ms_median"] / theirs["step_ms_median"]}, indent=2))
PY
