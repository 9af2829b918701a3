package dataset

import (
	"fmt"
	"slices"
)

// IgnoreIndex is the label of a position that is not trained on (prompt,
// padding, the first token of a packed example), as in PyTorch and Hugging
// Face; model.IgnoreIndex has the same value.
const IgnoreIndex = -100

// trainedBit marks a stored token whose label is trained on; the low 31 bits
// are the token id.
const trainedBit = 1 << 31

// Truncation policies (dataset.truncation).
const (
	TruncateRight = "right"
	TruncateLeft  = "left"
	TruncateDrop  = "drop"
)

// outcome says what happened to a row beyond being encoded.
type outcome uint8

const (
	kept outcome = iota
	keptTruncated
	droppedTooLong   // longer than max_seq_len with truncation drop
	droppedUntrained // nothing left to train on after truncation
)

// encoder tokenizes rendered rows into tokens with trained bits.
type encoder struct {
	tok      Tokenizer
	pre, suf []int // what Encode(text, true) adds around Encode(text, false)
	eos      int   // -1 when the tokenizer has none
	maxLen   int
	trunc    string
}

func newEncoder(tok Tokenizer, maxLen int, trunc string) (*encoder, error) {
	if maxLen < 1 {
		return nil, fmt.Errorf("dataset: max_seq_len must be >= 1, got %d", maxLen)
	}
	switch trunc {
	case TruncateRight, TruncateLeft, TruncateDrop:
	default:
		return nil, fmt.Errorf("dataset: truncation must be right, left or drop, got %q", trunc)
	}
	e := &encoder{tok: tok, eos: tok.Special().EOS, maxLen: maxLen, trunc: trunc}
	// Find the special tokens the post-processor adds by encoding a probe
	// both ways: with = pre + without + suf.
	without, err := tok.Encode("a", false)
	if err != nil {
		return nil, fmt.Errorf("dataset: tokenizer: %w", err)
	}
	with, err := tok.Encode("a", true)
	if err != nil {
		return nil, fmt.Errorf("dataset: tokenizer: %w", err)
	}
	for i := 0; i+len(without) <= len(with); i++ {
		if slices.Equal(with[i:i+len(without)], without) {
			e.pre = slices.Clone(with[:i])
			e.suf = slices.Clone(with[i+len(without):])
			break
		}
	}
	return e, nil
}

// encode returns the tokens of a rendered row, truncated by policy, and what
// became of it. toks is nil for a dropped row.
func (e *encoder) encode(r rendered) (toks []uint32, out outcome, err error) {
	body, err := e.tok.Encode(r.text, false)
	if err != nil {
		return nil, 0, err
	}
	at, err := e.boundaryTokens(r.text, r.spans, body)
	if err != nil {
		return nil, 0, err
	}
	marks := make([]bool, len(body))
	for _, s := range r.spans {
		for k := at[s.start]; k < at[s.end]; k++ {
			marks[k] = true
		}
	}
	var ids []int
	if r.chat {
		ids = body
	} else {
		lastTrained := len(marks) > 0 && marks[len(marks)-1]
		ids = make([]int, 0, len(e.pre)+len(body)+len(e.suf)+1)
		ids = append(append(append(ids, e.pre...), body...), e.suf...)
		m := make([]bool, 0, cap(ids))
		m = append(m, make([]bool, len(e.pre))...)
		m = append(m, marks...)
		for range e.suf {
			m = append(m, lastTrained)
		}
		if e.eos >= 0 && (len(ids) == 0 || ids[len(ids)-1] != e.eos) {
			ids = append(ids, e.eos)
			m = append(m, lastTrained)
		}
		marks = m
	}
	out = kept
	if len(ids) > e.maxLen {
		switch e.trunc {
		case TruncateDrop:
			return nil, droppedTooLong, nil
		case TruncateLeft:
			ids, marks = ids[len(ids)-e.maxLen:], marks[len(marks)-e.maxLen:]
		default:
			ids, marks = ids[:e.maxLen], marks[:e.maxLen]
		}
		out = keptTruncated
	}
	// Position 0 has no token before it to predict it.
	if len(marks) < 2 || !slices.Contains(marks[1:], true) {
		return nil, droppedUntrained, nil
	}
	toks = make([]uint32, len(ids))
	for i, id := range ids {
		if id < 0 || id >= trainedBit {
			return nil, 0, fmt.Errorf("token id %d out of range", id)
		}
		toks[i] = uint32(id)
		if marks[i] {
			toks[i] |= trainedBit
		}
	}
	return toks, out, nil
}

// boundaryTokens maps every span boundary (a byte offset of text) to the
// number of tokens of body before it.
func (e *encoder) boundaryTokens(text string, spans []span, body []int) (map[int]int, error) {
	at := make(map[int]int, 2*len(spans))
	var inner []int
	for _, s := range spans {
		for _, b := range [2]int{s.start, s.end} {
			switch {
			case b <= 0:
				at[b] = 0
			case b >= len(text):
				at[b] = len(body)
			default:
				if _, dup := at[b]; !dup {
					at[b] = -1
					inner = append(inner, b)
				}
			}
		}
	}
	// With several boundaries (a multi-turn chat), encoding the pieces
	// between them is cheaper than encoding a prefix per boundary; it is
	// exact when the pieces' tokens concatenate to the whole text's, as they
	// do when boundaries fall where the tokenizer splits anyway (special
	// tokens, line ends).
	if len(inner) > 1 {
		slices.Sort(inner)
		var pieces []int
		counts := make([]int, len(inner))
		prev := 0
		ok := true
		for i, b := range append(inner, len(text)) {
			ids, err := e.tok.Encode(text[prev:b], false)
			if err != nil {
				return nil, err
			}
			pieces = append(pieces, ids...)
			if i < len(inner) {
				counts[i] = len(pieces)
			}
			if len(pieces) > len(body) || !slices.Equal(pieces, body[:len(pieces)]) {
				ok = false
				break
			}
			prev = b
		}
		if ok && len(pieces) == len(body) {
			for i, b := range inner {
				at[b] = counts[i]
			}
			return at, nil
		}
	}
	for _, b := range inner {
		n, err := e.tokensBefore(text, b, body)
		if err != nil {
			return nil, err
		}
		at[b] = n
	}
	return at, nil
}

// tokensBefore returns how many tokens of body encode text[:b]: the length of
// the longest common prefix of body and the encoding of text[:b]. A token
// that straddles b (the tokenizer merged across it) counts as after b.
func (e *encoder) tokensBefore(text string, b int, body []int) (int, error) {
	if b <= 0 {
		return 0, nil
	}
	if b >= len(text) {
		return len(body), nil
	}
	p, err := e.tok.Encode(text[:b], false)
	if err != nil {
		return 0, err
	}
	n := 0
	for n < len(p) && n < len(body) && p[n] == body[n] {
		n++
	}
	return n, nil
}
