package scoring

import (
	"cmp"
	"slices"
)

// Batch is one unit of scoring work: a set of input rows scored together,
// padded to its longest row.
type Batch struct {
	// ID is the batch's position in the plan, 0..len(plan)-1. The plan is a
	// pure function of its inputs, so the same data and settings give the same
	// ids on every coordinator (after a failover too).
	ID int `json:"id"`
	// Rows are the input row indexes, ascending.
	Rows []int `json:"rows"`
	// MaxLen is the longest row's length in tokens.
	MaxLen int `json:"max_len"`
	// Tokens is the sum of the rows' lengths.
	Tokens int `json:"tokens"`
}

// Padded is the tokens the batch occupies once padded: rows × MaxLen.
func (b *Batch) Padded() int { return len(b.Rows) * b.MaxLen }

// Plan splits rows of the given lengths (in tokens; what the model will see)
// into batches of at most batchSize rows and, when maxTokens > 0, at most
// maxTokens padded tokens (rows × longest row). A row longer than maxTokens
// gets a batch of its own, for the worker to score or to report as too long.
// batchSize < 1 means no limit on rows when maxTokens > 0, and 1 otherwise.
//
// Rows are sorted by length, longest first (ties by index), and cut into
// consecutive batches, so rows of similar length share a batch and padding is
// small; batch 0 holds the longest rows, so a batch that does not fit in
// memory fails first and long batches do not trail at the end of the job
// (longest-processing-time-first). Every row is in exactly one batch. Merge
// restores input order by row index.
func Plan(lengths []int, batchSize, maxTokens int) []Batch {
	if batchSize < 1 {
		if maxTokens > 0 {
			batchSize = len(lengths) + 1
		} else {
			batchSize = 1
		}
	}
	order := make([]int, len(lengths))
	for i := range order {
		order[i] = i
	}
	ln := func(i int) int { return max(lengths[i], 0) }
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(ln(b), ln(a)) })

	var plan []Batch
	var cur *Batch
	for _, i := range order {
		l := ln(i)
		if cur != nil {
			fits := len(cur.Rows) < batchSize
			if maxTokens > 0 && (len(cur.Rows)+1)*cur.MaxLen > maxTokens {
				fits = false
			}
			if !fits {
				cur = nil
			}
		}
		if cur == nil {
			plan = append(plan, Batch{ID: len(plan), MaxLen: l})
			cur = &plan[len(plan)-1]
		}
		cur.Rows = append(cur.Rows, i)
		cur.Tokens += l
	}
	for i := range plan {
		slices.Sort(plan[i].Rows)
	}
	return plan
}

// Padding sums the real and the padded tokens of a plan; padded - real is
// the compute spent on padding.
func Padding(plan []Batch) (tokens, padded int) {
	for i := range plan {
		tokens += plan[i].Tokens
		padded += plan[i].Padded()
	}
	return tokens, padded
}
