// Package tokenizer loads Hugging Face tokenizer.json files (with the
// tokenizer_config.json beside them) and encodes and decodes text exactly as
// the Hugging Face tokenizers library does, in pure Go: byte-level BPE
// (GPT-2, Llama 3, Qwen 2/3, DeepSeek), SentencePiece-style BPE with byte
// fallback (Llama 2, Mistral, Gemma) and WordPiece (BERT), together with the
// normalizers, pre-tokenizers, added tokens, post-processors and decoders those
// files use. It also renders chat templates and holds the body of the
// `herd tokenize` command.
//
// Exactness is checked against the reference JavaScript port
// (@huggingface/tokenizers) on real tokenizer.json files by the oracle tests;
// docs/tokenizers.md lists what is covered and where behaviour is knowingly
// that of the Rust library rather than of the JavaScript port.
package tokenizer
