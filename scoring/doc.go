// Package scoring is the pure-Go half of batched scoring (evaluation and
// batch inference): the batching plan that fans rows out to workers, the
// metrics computed over the whole set, the exactly-once merge of batch
// results into predictions.jsonl and metrics.json, and the progress snapshot
// that `herd status` shows.
//
// Metrics reproduce their reference implementations exactly: SQuAD v1.1's
// evaluation script (exact match, token F1), Google's rouge-score (ROUGE-L)
// and sacreBLEU 2.x (corpus BLEU with the 13a tokeniser). Every metric is
// computed from sufficient statistics summed over rows (never from batch
// means), with exact float sums, so a job's metrics do not depend on how its
// rows were batched or in which order batches came back. docs/scoring.md has
// the definitions, file formats and merge guarantees.
//
// Nothing here needs libtorch, a GPU or the network.
package scoring
