package dataset

import (
	"context"
	"errors"
	"io"
	"runtime"
	"sync"
)

// Stats describe what became of a data file's rows. The caller logs them:
// Skipped in particular is how many malformed rows on_error skip left out.
type Stats struct {
	// File is the data file.
	File string `json:"file"`
	// Bytes is its size on disk.
	Bytes int64 `json:"bytes"`
	// Rows read, malformed ones included.
	Rows int `json:"rows"`
	// Examples kept.
	Examples int `json:"examples"`
	// Skipped malformed rows (dataset.on_error skip).
	Skipped int `json:"skipped"`
	// Truncated examples, kept but cut to max_seq_len (truncation right or left).
	Truncated int `json:"truncated"`
	// TooLong examples dropped for being longer than max_seq_len (truncation drop).
	TooLong int `json:"too_long"`
	// Untrainable examples dropped because truncation left no trained token.
	Untrainable int `json:"untrainable"`
	// Tokens in the kept examples.
	Tokens int64 `json:"tokens"`
	// TargetTokens is how many of them are trained on.
	TargetTokens int64 `json:"target_tokens"`
	// Errors holds the messages of the first malformed rows (at most 10).
	Errors []string `json:"errors,omitempty"`
	// Cached says the tokens came from the cache rather than a fresh build.
	Cached bool `json:"-"`
}

const maxStatErrors = 10

// built is one example as the pipeline hands it on.
type built struct {
	toks      []uint32
	src       Source
	truncated bool
}

// tokenizeFile streams the rows of path through the formatter and encoder on
// several goroutines and hands the examples to sink in file order. A
// malformed row stops the build with a *RowError when skip is false, else it
// is counted. Stats.File and Stats.Bytes are left to the caller.
func tokenizeFile(ctx context.Context, path string, f *formatter, e *encoder, skip bool, workers int,
	sink func(built) error) (Stats, error) {
	rr, err := OpenRows(path)
	if err != nil {
		return Stats{}, err
	}
	defer rr.Close()
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	type result struct {
		toks []uint32
		out  outcome
		src  Source
		err  error
	}
	type chunk struct {
		rows  []Row
		errs  []error // reader errors by row (row errors), nil when the row was read
		res   []result
		fatal error // ends the file after these rows
		done  chan struct{}
	}
	const chunkRows = 128
	work := make(chan *chunk, 2*workers)
	order := make(chan *chunk, 4*workers)
	var wg sync.WaitGroup

	wg.Add(1)
	go func() { // reader
		defer wg.Done()
		defer close(work)
		defer close(order)
		for eof := false; !eof; {
			c := &chunk{done: make(chan struct{})}
			for len(c.rows) < chunkRows {
				row, err := rr.Next()
				if errors.Is(err, io.EOF) {
					eof = true
					break
				}
				if err != nil && !errors.Is(err, ErrBadRow) {
					c.fatal, eof = err, true
					break
				}
				c.rows = append(c.rows, row)
				c.errs = append(c.errs, err)
			}
			for _, ch := range [...]chan *chunk{order, work} {
				select {
				case ch <- c:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				c.res = make([]result, len(c.rows))
				for i, row := range c.rows {
					if ctx.Err() != nil {
						break
					}
					r := &c.res[i]
					if r.err = c.errs[i]; r.err != nil {
						var re *RowError
						if errors.As(r.err, &re) {
							r.src = re.Src
						}
						continue
					}
					r.src = row.Src
					var rd rendered
					if rd, r.err = f.render(row); r.err != nil {
						continue
					}
					if r.toks, r.out, r.err = e.encode(rd); r.err != nil {
						var re *RowError
						if !errors.As(r.err, &re) {
							r.err = &RowError{Src: row.Src, Reason: "cannot tokenize", Err: r.err}
						}
					}
				}
				c.rows, c.errs = nil, nil
				close(c.done)
			}
		}()
	}

	var st Stats
	collect := func() error {
		for c := range order {
			select {
			case <-c.done:
			case <-ctx.Done():
				return ctx.Err()
			}
			if err := ctx.Err(); err != nil {
				return err // the workers may have left the chunk half done
			}
			for _, r := range c.res {
				st.Rows++
				if r.err != nil {
					if !skip {
						return r.err
					}
					st.Skipped++
					if len(st.Errors) < maxStatErrors {
						st.Errors = append(st.Errors, r.err.Error())
					}
					continue
				}
				switch r.out {
				case droppedTooLong:
					st.TooLong++
					continue
				case droppedUntrained:
					st.Untrainable++
					continue
				case keptTruncated:
					st.Truncated++
				}
				st.Examples++
				st.Tokens += int64(len(r.toks))
				st.TargetTokens += int64(trainedCount(r.toks))
				if err := sink(built{toks: r.toks, src: r.src, truncated: r.out == keptTruncated}); err != nil {
					return err
				}
			}
			if c.fatal != nil {
				return c.fatal
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		return ctx.Err()
	}
	err = collect()
	cancel()
	wg.Wait()
	if err != nil {
		return st, err
	}
	return st, nil
}

// trainedCount counts the trained tokens of an example at positions >= 1
// (position 0 has nothing before it to predict it).
func trainedCount(toks []uint32) int {
	n := 0
	for _, t := range toks[min(1, len(toks)):] {
		if t&trainedBit != 0 {
			n++
		}
	}
	return n
}
