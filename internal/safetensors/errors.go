package safetensors

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalid is matched (errors.Is) by every error about a malformed
	// file, header, index or tensor; the error itself is a *FormatError.
	ErrInvalid = errors.New("safetensors: invalid file")
	// ErrNotFound is matched by the error of a lookup of a tensor name that
	// the file or model does not hold.
	ErrNotFound = errors.New("safetensors: tensor not found")
)

// A FormatError says what is wrong with a safetensors file or model index:
// which file, which tensor (when one is at fault) and what was expected
// against what was found.
type FormatError struct {
	Path   string // the file at fault
	Tensor string // the tensor at fault, "" when the fault is not a tensor's
	Msg    string
}

func (e *FormatError) Error() string {
	if e.Tensor != "" {
		return fmt.Sprintf("safetensors: %s: tensor %q: %s", e.Path, e.Tensor, e.Msg)
	}
	return fmt.Sprintf("safetensors: %s: %s", e.Path, e.Msg)
}

// Is makes errors.Is(err, ErrInvalid) true for every FormatError.
func (e *FormatError) Is(target error) bool { return target == ErrInvalid }

func formatErr(path, tensor, format string, args ...any) error {
	return &FormatError{Path: path, Tensor: tensor, Msg: fmt.Sprintf(format, args...)}
}
