package dataset

import (
	"errors"
	"fmt"
)

var (
	// ErrFormat is returned for a data file herd cannot read at all: an unknown
	// extension, a JSON file that is not an array of objects, a CSV file without
	// a header row, an unreadable Parquet footer.
	ErrFormat = errors.New("dataset: unsupported data file")
	// ErrBadRow is wrapped by every *RowError: a row that cannot become an
	// example. errors.Is(err, ErrBadRow) tells a data problem from an I/O one.
	ErrBadRow = errors.New("dataset: bad row")
	// ErrEmpty is returned when a data file yields no example to train on.
	ErrEmpty = errors.New("dataset: no examples")
	// ErrChatTemplate is wrapped by row errors of the chat format that come from
	// the tokenizer's chat template rather than from the row.
	ErrChatTemplate = errors.New("dataset: chat template")
)

// RowError is a malformed row: where it is and why. Its message has the form
// "data/train.jsonl:12: field "text" missing" (a line number for JSONL and
// CSV, "[index]" for JSON arrays and Parquet files).
type RowError struct {
	Src    Source
	Reason string
	Err    error // optional cause
}

func (e *RowError) Error() string {
	if e.Err != nil && e.Reason == "" {
		return fmt.Sprintf("%s: %v", e.Src, e.Err)
	}
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Src, e.Reason, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Src, e.Reason)
}

// Unwrap returns ErrBadRow and the cause, so that errors.Is works for both.
func (e *RowError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrBadRow, e.Err}
	}
	return []error{ErrBadRow}
}

func rowErr(src Source, format string, args ...any) *RowError {
	return &RowError{Src: src, Reason: fmt.Sprintf(format, args...)}
}
