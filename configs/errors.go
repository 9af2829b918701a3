package configs

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// SetSource is the File of a FieldError about a `--set` override.
const SetSource = "--set"

// ErrUnknownRecipe is returned by Recipe for a name that is not shipped.
var ErrUnknownRecipe = errors.New("configs: unknown recipe")

// FieldError is one problem with a configuration. Parse, Load and Validate return every
// problem at once, joined with errors.Join; Problems lists them.
type FieldError struct {
	// File is the config file name as given to Load or Parse, SetSource for a problem with
	// a `--set` override, or empty when the config did not come from a file.
	File string
	// Line is the 1-based line of the YAML key (or value) at fault; 0 when the field was
	// not in the file (a default) or for overrides.
	Line int
	// Path is the dotted field path, e.g. "training.lr" or "lora.target_modules[2]";
	// empty for problems with the whole document (YAML syntax).
	Path string
	// Msg says what was expected and what was found, lower-case.
	Msg string
}

// Error renders "file:line: path: msg", leaving out the parts that are unknown; a problem
// with an override renders as "--set path: msg".
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File == SetSource {
		b.WriteString(SetSource)
		if e.Path != "" {
			b.WriteString(" " + e.Path)
		}
		b.WriteString(": ")
	} else {
		switch {
		case e.File != "" && e.Line > 0:
			b.WriteString(e.File + ":" + strconv.Itoa(e.Line) + ": ")
		case e.File != "":
			b.WriteString(e.File + ": ")
		case e.Line > 0:
			b.WriteString("line " + strconv.Itoa(e.Line) + ": ")
		}
		if e.Path != "" {
			b.WriteString(e.Path + ": ")
		}
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Problems lists the *FieldError values inside err, in the order they were joined
// (by line within the file, then overrides, then defaults). It returns nil for nil or
// for an error that holds none.
func Problems(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if fe, ok := e.(*FieldError); ok {
			out = append(out, fe)
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}

// joinProblems orders problems the way a reader fixes them: top of the file down, then
// the command line, then fields that were never written (defaults and derived values).
func joinProblems(probs []*FieldError) error {
	if len(probs) == 0 {
		return nil
	}
	rank := func(p *FieldError) int {
		switch {
		case p.File == SetSource:
			return 1
		case p.Line > 0:
			return 0
		}
		return 2
	}
	sorted := append([]*FieldError(nil), probs...)
	sort.SliceStable(sorted, func(i, j int) bool {
		ri, rj := rank(sorted[i]), rank(sorted[j])
		if ri != rj {
			return ri < rj
		}
		return ri == 0 && sorted[i].Line < sorted[j].Line
	})
	errs := make([]error, len(sorted))
	for i, p := range sorted {
		errs[i] = p
	}
	return errors.Join(errs...)
}

// origin is where a field's value came from.
type origin struct {
	file string
	line int
}

// sources maps field paths to the place they were written.
type sources struct {
	file  string
	paths map[string]origin
}

func newSources(file string) *sources {
	return &sources{file: file, paths: map[string]origin{}}
}

// at returns where path was written, or the config's file with line 0 when it was not.
func (s *sources) at(path string) origin {
	if s == nil {
		return origin{}
	}
	if o, ok := s.paths[path]; ok {
		return o
	}
	return origin{file: s.file}
}

// problem builds a FieldError located at path.
func (s *sources) problem(path, format string, args ...any) *FieldError {
	o := s.at(path)
	return &FieldError{File: o.file, Line: o.line, Path: path, Msg: fmt.Sprintf(format, args...)}
}
