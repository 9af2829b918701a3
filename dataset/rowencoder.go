package dataset

import (
	"errors"
	"fmt"

	"github.com/herdml/herd/configs"
)

// Why a row encodes to no example; RowEncoder.Encode wraps them, so callers
// (scoring) can record a per-row error instead of dropping the row.
var (
	ErrTooLong  = errors.New("longer than max_seq_len")
	ErrNoTarget = errors.New("no target token to score")
)

// RowEncoder renders and tokenizes one row at a time exactly as Load does
// for training, but reports what Load would drop (too long, nothing to
// score) as an error: scoring needs one outcome per input row, not a set.
type RowEncoder struct {
	f *formatter
	e *encoder
}

// NewRowEncoder builds the encoder of d's format. Over-long rows are errors
// whatever d.Truncation says: a scored row must be the row as written.
func NewRowEncoder(d configs.Dataset, tok Tokenizer) (*RowEncoder, error) {
	f, err := newFormatter(d, tok)
	if err != nil {
		return nil, err
	}
	e, err := newEncoder(tok, d.MaxSeqLen, TruncateDrop)
	if err != nil {
		return nil, err
	}
	return &RowEncoder{f: f, e: e}, nil
}

// Encode returns the row's token ids and labels (IgnoreIndex where the
// format does not train).
func (r *RowEncoder) Encode(row Row) (ids, labels []int64, err error) {
	rd, err := r.f.render(row)
	if err != nil {
		return nil, nil, err
	}
	toks, out, err := r.e.encode(rd)
	if err != nil {
		return nil, nil, err
	}
	switch out {
	case droppedTooLong:
		body, _ := r.e.tok.Encode(rd.text, false)
		return nil, nil, fmt.Errorf("%w: %d tokens, max_seq_len is %d", ErrTooLong, len(body), r.e.maxLen)
	case droppedUntrained:
		return nil, nil, ErrNoTarget
	}
	ids = make([]int64, len(toks))
	labels = make([]int64, len(toks))
	for i, t := range toks {
		ids[i] = int64(t &^ trainedBit)
		labels[i] = IgnoreIndex
		// Position 0 predicts nothing, as in Set.Sequence.
		if i > 0 && t&trainedBit != 0 {
			labels[i] = ids[i]
		}
	}
	return ids, labels, nil
}
