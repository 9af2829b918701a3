package dataset

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/herdml/herd/configs"
)

// InspectOptions tune Inspect.
type InspectOptions struct {
	// Examples is how many examples are printed (the first ones of the file).
	Examples int
	// Color marks trained tokens with ANSI colours instead of ⟦ ⟧. Inspect
	// turns it on by itself when w is a terminal and NO_COLOR is unset.
	Color bool
}

// Inspect is the body of `herd dataset inspect FILE --config CFG`: it reads
// FILE as cfg.Dataset says (format, fields, max_seq_len, truncation,
// packing, train_on_prompt; on_error is ignored: malformed rows are counted
// and the first ones shown), prints the first n examples as the model sees
// them with the trained tokens marked, then length statistics: tokens per
// example (min, mean, p50, p95, max), the share truncated or dropped, and
// the packing efficiency (real tokens / (sequences × max_seq_len)).
func Inspect(w io.Writer, cfg *configs.Config, tok Tokenizer, file string, n int) error {
	return InspectWith(context.Background(), w, cfg, tok, file, InspectOptions{Examples: n, Color: isTerminal(w)})
}

// InspectWith is Inspect with explicit options.
func InspectWith(ctx context.Context, w io.Writer, cfg *configs.Config, tok Tokenizer, file string, o InspectOptions) error {
	d := cfg.Dataset
	d.OnError = "skip"
	p, err := newPipeline(d, tok, Options{})
	if err != nil {
		return err
	}
	fi, err := os.Stat(file)
	if err != nil {
		return fmt.Errorf("dataset: %w", err)
	}
	var shown []built
	var lengths, targets []int
	st, err := tokenizeFile(ctx, file, p.f, p.e, true, 0, func(b built) error {
		if len(shown) < o.Examples {
			shown = append(shown, b)
		}
		lengths = append(lengths, len(b.toks))
		targets = append(targets, trainedCount(b.toks))
		return nil
	})
	if err != nil {
		return err
	}
	st.File, st.Bytes = file, fi.Size()

	pw := &printer{w: w}
	pw.printf("%s: format %s, max_seq_len %d, truncation %s, packing %v, train_on_prompt %v\n",
		file, d.Format, d.MaxSeqLen, d.Truncation, d.Packing, d.TrainOnPrompt)
	if o.Color {
		pw.printf("trained tokens (the loss is computed on them) in %sgreen%s, the rest %sdimmed%s\n", colorOn, colorOff, dimOn, colorOff)
	} else {
		pw.printf("trained tokens (the loss is computed on them) are inside ⟦ ⟧\n")
	}
	for i, b := range shown {
		pw.printf("\n── example %d · %s · %d tokens, %d trained%s\n", i+1, b.src, len(b.toks), trainedCount(b.toks),
			map[bool]string{true: " · truncated", false: ""}[b.truncated])
		text, err := markTrained(tok, b.toks, o.Color)
		if err != nil {
			return err
		}
		pw.printf("%s\n", text)
	}
	pw.printf("\n")
	writeStats(pw, st, lengths, targets, d, uint64(cfg.Training.Seed))
	return pw.err
}

// printer remembers the first write error.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

const (
	colorOn  = "\x1b[32m"
	dimOn    = "\x1b[2m"
	colorOff = "\x1b[0m"
)

// markTrained decodes an example run by run of trained and untrained tokens,
// wrapping the trained runs. Position 0 is shown as not trained: nothing
// predicts it.
func markTrained(tok Tokenizer, toks []uint32, color bool) (string, error) {
	var b strings.Builder
	for lo := 0; lo < len(toks); {
		trained := lo > 0 && toks[lo]&trainedBit != 0
		hi := lo + 1
		for hi < len(toks) && (toks[hi]&trainedBit != 0) == trained {
			hi++
		}
		ids := make([]int, hi-lo)
		for i := range ids {
			ids[i] = int(toks[lo+i] &^ trainedBit)
		}
		s, err := tok.Decode(ids, false)
		if err != nil {
			return "", err
		}
		switch {
		case trained && color:
			b.WriteString(colorOn + s + colorOff)
		case trained:
			b.WriteString("⟦" + s + "⟧")
		case color:
			b.WriteString(dimOn + s + colorOff)
		default:
			b.WriteString(s)
		}
		lo = hi
	}
	return b.String(), nil
}

func writeStats(p *printer, st Stats, lengths, targets []int, d configs.Dataset, seed uint64) {
	pct := func(a, b int) float64 {
		if b == 0 {
			return 0
		}
		return 100 * float64(a) / float64(b)
	}
	p.printf("rows %d · examples %d · malformed %d · truncated %d (%.1f%%) · dropped too long %d · dropped with nothing to train %d\n",
		st.Rows, st.Examples, st.Skipped, st.Truncated, pct(st.Truncated, st.Examples), st.TooLong, st.Untrainable)
	for _, e := range st.Errors {
		p.printf("  malformed: %s\n", e)
	}
	if len(lengths) == 0 {
		p.printf("no examples\n")
		return
	}
	p.printf("tokens per example:  %s\n", summarize(lengths))
	p.printf("trained per example: %s\n", summarize(targets))
	p.printf("tokens %d · trained %d (%.1f%%)\n", st.Tokens, st.TargetTokens, pct(int(st.TargetTokens), int(st.Tokens)))
	order := shuffled(len(lengths), seed, streamPack)
	packed := packStarts(len(order), func(i int) int { return lengths[order[i]] }, d.MaxSeqLen)
	packedSeqs := len(packed) - 1
	eff := func(seqs int) float64 { return 100 * float64(st.Tokens) / (float64(seqs) * float64(d.MaxSeqLen)) }
	if d.Packing {
		p.printf("packing: %d examples in %d sequences of max_seq_len %d · efficiency %.1f%%\n",
			len(lengths), packedSeqs, d.MaxSeqLen, eff(packedSeqs))
	} else {
		p.printf("no packing: %d sequences · efficiency %.1f%% of max_seq_len %d (with packing: %d sequences, %.1f%%)\n",
			len(lengths), eff(len(lengths)), d.MaxSeqLen, packedSeqs, eff(packedSeqs))
	}
}

// summarize formats min, mean, p50, p95 and max of xs.
func summarize(xs []int) string {
	s := slices.Clone(xs)
	slices.Sort(s)
	sum := 0
	for _, x := range s {
		sum += x
	}
	q := func(f float64) int { return s[min(len(s)-1, int(math.Ceil(f*float64(len(s))))-1)] }
	return fmt.Sprintf("min %d · mean %.1f · p50 %d · p95 %d · max %d", s[0], float64(sum)/float64(len(s)), q(0.5), q(0.95), s[len(s)-1])
}

// isTerminal reports whether w is a terminal that takes colours.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
