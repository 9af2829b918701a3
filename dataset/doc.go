// Package dataset turns user data files into token batches for training: it
// streams rows from JSONL, JSON, CSV and Parquet files (optionally gzipped),
// renders them in the completion, instruction (Alpaca) or chat format,
// tokenizes them with masks that say which tokens are trained, truncates and
// packs them to max_seq_len, caches the tokens in memory-mapped shards under
// data/processed, splits off an evaluation set, and shards every optimizer
// step's global batch across data-parallel workers so that the world size
// may change mid-epoch without an example being repeated or skipped.
//
// The pieces, in the order data flows through them: OpenRows (readers),
// Load (formats, tokenization, truncation, cache, split, packing) giving
// Sets, Plan (epoch permutations, global batches, shards, micro-batches) and
// Set.Batch (padded ids and labels). Inspect prints formatted examples and
// length statistics for `herd dataset inspect`. docs/datasets.md is the user
// documentation.
package dataset
