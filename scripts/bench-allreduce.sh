#!/usr/bin/env bash
# Benchmarks herd's all-reduce over NATS against PyTorch gloo on 127.0.0.1
# and prints a table of bus bandwidth (nccl-tests definition, MB/s) with
# ratios. It builds nothing: pass the herd binary (default bin/herd), which
# must provide `herd bench allreduce` (member processes re-execute it).
#
#   scripts/bench-allreduce.sh [HERD_BIN]
#
# Environment:
#   WORKERS   group sizes          (default "2 4")
#   SIZES     buffer bytes         (default "1048576 16777216 67108864")
#   REPEAT    runs per cell, interleaved herd/gloo; the median is shown (default 3)
#   PYTHON    interpreter with torch (default /usr/bin/python3, Debian's python3-torch)
#   RAW       file to append every run's JSON line to (default: none)
#   HERD_ARGS extra arguments for `herd bench allreduce`
set -euo pipefail
cd "$(dirname "$0")/.."
HERD=${1:-bin/herd}
WORKERS=${WORKERS:-"2 4"}
SIZES=${SIZES:-"1048576 16777216 67108864"}
REPEAT=${REPEAT:-3}
PYTHON=${PYTHON:-/usr/bin/python3}
RAW=${RAW:-}
GLOO=collective/bench/gloo_allreduce.py

if [ ! -x "$HERD" ]; then
  echo "bench-allreduce: $HERD is not an executable; build it first (make build) or pass its path" >&2
  exit 1
fi
if ! "$PYTHON" -c 'import torch.distributed' 2>/dev/null; then
  echo "bench-allreduce: $PYTHON lacks torch.distributed; install python3-torch or set PYTHON" >&2
  exit 1
fi

iters_for() { # fewer timed calls for larger buffers
  if [ "$1" -le 1048576 ]; then echo 50; elif [ "$1" -le 16777216 ]; then echo 20; else echo 8; fi
}

busbw() { # reads one JSON object on stdin, prints busbw_mb_s
  "$PYTHON" -c 'import json,sys; print("%.1f" % json.loads(sys.stdin.read().strip().splitlines()[-1])["busbw_mb_s"])'
}

run() { # label cmd...: runs, records raw JSON, prints busbw or "fail"
  local out
  if out=$("${@:2}" 2>/tmp/bench-allreduce.$$.err); then
    [ -n "$RAW" ] && echo "$out" | tail -1 >>"$RAW"
    echo "$out" | busbw
  else
    echo "bench-allreduce: $1 failed: $(tail -3 /tmp/bench-allreduce.$$.err)" >&2
    echo fail
  fi
}

median() { # numbers as arguments ("fail" ignored)
  printf '%s\n' "$@" | grep -v fail | sort -g | awk '{a[NR]=$1} END {if (NR==0) print "fail"; else if (NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'
}

ratio() { if [ "$1" = fail ] || [ "$2" = fail ]; then echo "-"; else awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; fi; }

printf '%-3s %10s %12s %12s %12s %10s %10s\n' N bytes herd-none herd-bf16 gloo none/gloo bf16/gloo
for n in $WORKERS; do
  for size in $SIZES; do
    iters=$(iters_for "$size")
    none=() bf16=() gloo=()
    for _ in $(seq "$REPEAT"); do
      # shellcheck disable=SC2086
      none+=("$(run "herd none" "$HERD" bench allreduce --workers "$n" --size "$size" --iters "$iters" --compression none ${HERD_ARGS:-})")
      # shellcheck disable=SC2086
      bf16+=("$(run "herd bf16" "$HERD" bench allreduce --workers "$n" --size "$size" --iters "$iters" --compression bf16 ${HERD_ARGS:-})")
      gloo+=("$(run gloo "$PYTHON" "$GLOO" --workers "$n" --size "$size" --iters "$iters")")
    done
    mn=$(median "${none[@]}") mb=$(median "${bf16[@]}") mg=$(median "${gloo[@]}")
    printf '%-3s %10s %12s %12s %12s %10s %10s\n' "$n" "$size" "$mn" "$mb" "$mg" "$(ratio "$mn" "$mg")" "$(ratio "$mb" "$mg")"
  done
done
rm -f /tmp/bench-allreduce.$$.err
echo "busbw in MB/s (1e6 B/s) = size/time × 2(N-1)/N; median of $REPEAT interleaved runs; load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
