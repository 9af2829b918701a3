package scoring

import (
	"errors"
	"fmt"
	"io"

	"github.com/herdml/herd/dataset"
)

// RowBytes returns, for every row of a data file in file order, the byte
// length of its text: the sum of the lengths of every string value in the
// row (nested lists and objects included, keys and JSON syntax not). A
// malformed row counts as 1.
//
// The coordinator plans a scoring job from these lengths instead of token
// counts: it never loads a tokenizer or a model, and rows sorted by bytes
// are sorted by tokens closely enough that padding falls nearly as much.
// Workers compute the same lengths from the same file and compare plan
// fingerprints before scoring anything.
func RowBytes(file string) ([]int, error) {
	r, err := dataset.OpenRows(file)
	if err != nil {
		return nil, fmt.Errorf("scoring: open %s: %w", file, err)
	}
	defer r.Close()
	var out []int
	for {
		row, err := r.Next()
		switch {
		case errors.Is(err, io.EOF):
			return out, nil
		case errors.Is(err, dataset.ErrBadRow):
			out = append(out, 1)
		case err != nil:
			return nil, fmt.Errorf("scoring: read %s: %w", file, err)
		default:
			out = append(out, max(textBytes(row.Fields), 1))
		}
	}
}

func textBytes(v any) int {
	switch x := v.(type) {
	case string:
		return len(x)
	case map[string]any:
		n := 0
		for _, e := range x {
			n += textBytes(e)
		}
		return n
	case []any:
		n := 0
		for _, e := range x {
			n += textBytes(e)
		}
		return n
	}
	return 0
}

// PlanFile plans the scoring of a data file by row byte lengths (RowBytes)
// and returns the plan with its fingerprint (Fingerprint).
func PlanFile(file, task string, batchSize int) ([]Batch, string, error) {
	lengths, err := RowBytes(file)
	if err != nil {
		return nil, "", err
	}
	if len(lengths) == 0 {
		return nil, "", fmt.Errorf("scoring: %s has no rows", file)
	}
	plan := Plan(lengths, batchSize, 0)
	fp, err := Fingerprint(task, plan)
	return plan, fp, err
}

// Fingerprint identifies a plan and task: the coordinator and the workers
// compare it to make sure they cut the same data into the same batches, and
// a Merger only takes up a spool with the same fingerprint.
func Fingerprint(task string, plan []Batch) (string, error) {
	fp, _, err := planFingerprint(task, plan)
	return fp, err
}
