package dataset

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/herdml/herd/configs"
)

// TestRowEncoder: a row that fits encodes as training stores it (labels as
// Set.Sequence gives them); what training would truncate or drop is an
// error scoring can record per row, whatever dataset.truncation says.
func TestRowEncoder(t *testing.T) {
	tok := loadTestTokenizer(t, tokOpts{})
	text := `{"text": "the quick brown fox jumps over the lazy dog"}`
	full, _, err := encodeRow(t, testDataset(nil), tok, text)
	if err != nil {
		t.Fatal(err)
	}
	n := len(full)
	cases := []struct {
		name string
		max  int
		row  string
		want error
	}{
		{"fits", n, text, nil},
		{"too long", n - 1, text, ErrTooLong},
		{"empty", n, `{"text": ""}`, ErrBadRow},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := testDataset(func(d *configs.Dataset) { d.Truncation, d.MaxSeqLen = TruncateRight, c.max })
			enc, err := NewRowEncoder(d, tok)
			if err != nil {
				t.Fatal(err)
			}
			var fields map[string]any
			if err := json.Unmarshal([]byte(c.row), &fields); err != nil {
				t.Fatal(err)
			}
			ids, labels, err := enc.Encode(Row{Fields: fields})
			if !errors.Is(err, c.want) {
				t.Fatalf("err %v, want %v", err, c.want)
			}
			if c.want != nil {
				return
			}
			if len(ids) != n || len(labels) != n || labels[0] != IgnoreIndex {
				t.Fatalf("%d ids, %d labels (first %d); want %d and position 0 ignored", len(ids), len(labels), labels[0], n)
			}
			for i, tk := range full {
				want := int64(IgnoreIndex)
				if i > 0 && tk&trainedBit != 0 {
					want = int64(tk &^ trainedBit)
				}
				if ids[i] != int64(tk&^trainedBit) || labels[i] != want {
					t.Fatalf("position %d: id %d label %d; stored token %#x", i, ids[i], labels[i], tk)
				}
			}
		})
	}
}
