// Reference encoder for herd's tokenizer oracle tests.
//
//   node oracle.mjs paths                  print {"name": dir} of every tokenizer (JSON)
//   node oracle.mjs encode NAME < in.jsonl one JSON line per input line {"text": ...}:
//                                          {"ids": [...], "ids_special": [...],
//                                           "decoded": ..., "decoded_skip": ...}
//   node oracle.mjs bench NAME FILE        encode every line of FILE (JSONL {"text"}),
//                                          print {"bytes": N, "seconds": S}
//   node oracle.mjs scale BYTES > out.jsonl  documents of 4-30 corpus lines (those under
//                                          2,000 bytes, without js_differs) joined by newlines, seeded, BYTES in all
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { TOKENIZERS, makeBert, makeUnigram, load, here } from "./tokenizers.mjs";

const [cmd, name, file] = process.argv.slice(2);

function decode(tok, ids, skip) {
  // tokenizers.js refuses an empty id list; the Rust library returns "".
  if (ids.length === 0) return "";
  return tok.decode(ids, { skip_special_tokens: skip, clean_up_tokenization_spaces: false });
}

if (cmd === "paths") {
  makeBert();
  makeUnigram();
  process.stdout.write(JSON.stringify(TOKENIZERS) + "\n");
} else if (cmd === "encode") {
  const tok = await load(name);
  const lines = readFileSync(0, "utf8").split("\n");
  if (lines.at(-1) === "") lines.pop();
  const out = [];
  for (const line of lines) {
    const { text } = JSON.parse(line);
    const ids = tok.encode(text, { add_special_tokens: false }).ids;
    const ids_special = tok.encode(text, { add_special_tokens: true }).ids;
    out.push(JSON.stringify({ ids, ids_special, decoded: decode(tok, ids, false), decoded_skip: decode(tok, ids_special, true) }));
  }
  process.stdout.write(out.join("\n") + (out.length ? "\n" : ""));
} else if (cmd === "bench") {
  const tok = await load(name);
  const texts = readFileSync(file, "utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l).text);
  let bytes = 0;
  for (const t of texts) bytes += Buffer.byteLength(t, "utf8");
  // One warm-up pass, then the best of three timed passes (the Go side does
  // the same), so that a busy machine disturbs the ratio less.
  for (const t of texts) tok.encode(t, { add_special_tokens: false });
  let seconds = Infinity;
  let n = 0;
  for (let rep = 0; rep < 3; rep++) {
    const start = process.hrtime.bigint();
    n = 0;
    for (const t of texts) n += tok.encode(t, { add_special_tokens: false }).ids.length;
    seconds = Math.min(seconds, Number(process.hrtime.bigint() - start) / 1e9);
  }
  process.stdout.write(JSON.stringify({ bytes, seconds, tokens: n }) + "\n");
} else if (cmd === "scale") {
  const want = Number(name);
  const src = readFileSync(join(here, "corpus.jsonl"), "utf8").split("\n").filter((l) => l !== "")
    .map((l) => JSON.parse(l)).filter((l) => !l.js_differs && Buffer.byteLength(l.text, "utf8") < 2000).map((l) => l.text);
  let seed = 42;
  const rnd = (n) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const out = [];
  let bytes = 0;
  while (bytes < want) {
    const parts = [];
    for (let k = 4 + rnd(27); k > 0; k--) parts.push(src[rnd(src.length)]);
    const text = parts.join("\n");
    bytes += Buffer.byteLength(text, "utf8");
    out.push(JSON.stringify({ text }));
  }
  process.stdout.write(out.join("\n") + "\n");
} else {
  process.stderr.write("usage: node oracle.mjs paths | encode NAME | bench NAME FILE | scale BYTES\n");
  process.exit(2);
}
