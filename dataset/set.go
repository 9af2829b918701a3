package dataset

import (
	"fmt"
	"math/rand/v2"
)

// Set is a training or evaluation set: a list of token sequences, each one
// example or (packed) several examples concatenated. Sequence indices are
// what Plan orders and shards. A Set is safe for concurrent use; it reads a
// store that Data.Close releases.
type Set struct {
	st        *store
	start     []int32 // sequence i is examples members[start[i]:start[i+1]]
	members   []int32 // example indices into st
	packed    bool
	maxSeqLen int
	pad       int64
}

// newSet groups examples of st into sequences: one each, or packed greedily
// in the given order into sequences of at most maxSeqLen tokens (an example
// that does not fit in the current sequence starts the next one).
func newSet(st *store, examples []int32, pack bool, maxSeqLen int, pad int64) *Set {
	s := &Set{st: st, members: examples, packed: pack, maxSeqLen: maxSeqLen, pad: pad}
	if !pack {
		s.start = make([]int32, len(examples)+1)
		for i := range s.start {
			s.start[i] = int32(i)
		}
		return s
	}
	s.start = packStarts(len(examples), func(i int) int { return st.length(int(examples[i])) }, maxSeqLen)
	return s
}

// packStarts packs n examples of the given lengths, in order, greedily into
// sequences of at most maxSeqLen tokens: an example that does not fit in the
// current sequence starts the next one. It returns where each sequence
// starts, then n.
func packStarts(n int, length func(i int) int, maxSeqLen int) []int32 {
	starts := []int32{0}
	used := 0
	for i := range n {
		l := length(i)
		if used > 0 && used+l > maxSeqLen {
			starts = append(starts, int32(i))
			used = 0
		}
		used += l
	}
	if n > 0 {
		starts = append(starts, int32(n))
	}
	return starts
}

// Len is the number of sequences: the N of a Plan.
func (s *Set) Len() int { return len(s.start) - 1 }

// Examples is the number of examples in the set (Len when not packed).
func (s *Set) Examples() int { return len(s.members) }

// Packed says whether sequences hold several examples.
func (s *Set) Packed() bool { return s.packed }

// MaxSeqLen is dataset.max_seq_len: no sequence is longer.
func (s *Set) MaxSeqLen() int { return s.maxSeqLen }

// PadID is the id padding positions get: the tokenizer's PAD, else its EOS,
// else 0.
func (s *Set) PadID() int64 { return s.pad }

func (s *Set) check(i int) {
	if i < 0 || i >= s.Len() {
		panic(fmt.Sprintf("dataset: sequence %d out of range [0, %d)", i, s.Len()))
	}
}

// SeqLen is the number of tokens of sequence i.
func (s *Set) SeqLen(i int) int {
	s.check(i)
	n := 0
	for _, ex := range s.members[s.start[i]:s.start[i+1]] {
		n += s.st.length(int(ex))
	}
	return n
}

// Rows returns the data file row indices (Source.Index) of the examples in
// sequence i, in order.
func (s *Set) Rows(i int) []int {
	s.check(i)
	var rows []int
	for _, ex := range s.members[s.start[i]:s.start[i+1]] {
		rows = append(rows, s.st.row(int(ex)))
	}
	return rows
}

// Sequence returns the ids and labels of sequence i, unpadded. A label is
// the token id where the token is trained on and IgnoreIndex elsewhere; the
// first token of every example is IgnoreIndex, so that no token is trained
// to predict across the boundary between packed examples (and position 0,
// which nothing predicts, is never counted).
func (s *Set) Sequence(i int) (ids, labels []int64) {
	n := s.SeqLen(i)
	ids, labels = make([]int64, n), make([]int64, n)
	s.fill(i, ids, labels)
	return ids, labels
}

// fill writes sequence i into ids and labels (at least SeqLen(i) long) and
// returns its length.
func (s *Set) fill(i int, ids, labels []int64) int {
	k := 0
	for _, ex := range s.members[s.start[i]:s.start[i+1]] {
		lo, hi := s.st.span(int(ex))
		for j := lo; j < hi; j++ {
			t := s.st.token(j)
			id := int64(t &^ trainedBit)
			ids[k] = id
			if t&trainedBit != 0 && j > lo {
				labels[k] = id
			} else {
				labels[k] = IgnoreIndex
			}
			k++
		}
	}
	return k
}

// Batch returns the sequences indices as a [rows, seqLen] batch, row-major,
// right-padded to the longest of them with PadID (labels IgnoreIndex). An
// empty indices gives an empty batch.
func (s *Set) Batch(indices []int) (ids, labels []int64, rows, seqLen int) {
	for _, i := range indices {
		seqLen = max(seqLen, s.SeqLen(i))
	}
	rows = len(indices)
	if rows == 0 || seqLen == 0 {
		return nil, nil, rows, seqLen
	}
	ids, labels = make([]int64, rows*seqLen), make([]int64, rows*seqLen)
	for r, i := range indices {
		rowIDs, rowLabels := ids[r*seqLen:(r+1)*seqLen], labels[r*seqLen:(r+1)*seqLen]
		n := s.fill(i, rowIDs, rowLabels)
		for k := n; k < seqLen; k++ {
			rowIDs[k], rowLabels[k] = s.pad, IgnoreIndex
		}
	}
	return ids, labels, rows, seqLen
}

// Tokens counts the real (unpadded) tokens of the sequences.
func (s *Set) Tokens(indices []int) int {
	n := 0
	for _, i := range indices {
		n += s.SeqLen(i)
	}
	return n
}

// TargetTokens counts the trained labels of the sequences: the tokens whose
// loss a batch of them sums, as the engine's Batch.Tokens counts them. The
// global batch's count is what token-weighted gradient accumulation divides
// by.
func (s *Set) TargetTokens(indices []int) int {
	n := 0
	for _, i := range indices {
		s.check(i)
		for _, ex := range s.members[s.start[i]:s.start[i+1]] {
			lo, hi := s.st.span(int(ex))
			for j := lo + 1; j < hi; j++ {
				if s.st.token(j)&trainedBit != 0 {
					n++
				}
			}
		}
	}
	return n
}

// TargetTokens counts the labels that are not IgnoreIndex in a batch's labels.
func TargetTokens(labels []int64) int {
	n := 0
	for _, l := range labels {
		if l != IgnoreIndex {
			n++
		}
	}
	return n
}

// PackingEfficiency is the share of the set's sequence capacity filled with
// real tokens: tokens / (sequences × max_seq_len).
func (s *Set) PackingEfficiency() float64 {
	if s.Len() == 0 {
		return 0
	}
	tokens := 0
	for _, ex := range s.members {
		tokens += s.st.length(int(ex))
	}
	return float64(tokens) / (float64(s.Len()) * float64(s.maxSeqLen))
}

// shuffled returns 0..n-1 in a seeded random order (Fisher–Yates).
func shuffled(n int, seed, stream uint64) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(i)
	}
	rng := rand.New(rand.NewPCG(seed, stream))
	rng.Shuffle(n, func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}
