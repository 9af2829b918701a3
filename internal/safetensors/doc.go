// Package safetensors owns herd's reading and writing of the safetensors
// tensor file format used by Hugging Face models and PEFT adapters: the
// single-file layout (8-byte little-endian header length, a JSON header,
// then the raw little-endian row-major tensor bytes), the sharded model
// layout (model-0000i-of-0000N.safetensors plus model.safetensors.index.json),
// and conversions between the floating-point element types (F32, BF16, F16).
//
// Files are memory-mapped read-only, so opening a 16 GB shard costs no Go
// heap; the byte slices handed out alias the mapping and are valid until
// Close. Headers are validated strictly before any tensor is handed out, and
// files are written atomically in the same byte layout as the reference
// Python/Rust implementation.
//
// The package is pure Go: it must not import gotch or internal/torch.
package safetensors
