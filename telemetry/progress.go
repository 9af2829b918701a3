package telemetry

import (
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// ProgressOptions configure a Progress. The zero value is usable.
type ProgressOptions struct {
	// Terminal forces the terminal (true) or plain-line (false) rendering;
	// nil detects it from the writer (IsTerminal).
	Terminal *bool
	// Interval is how often a plain line is printed when the writer is not
	// a terminal. Default 30s. On a terminal the line is redrawn at most
	// every 100ms.
	Interval time.Duration
	// Width is the terminal width in columns. Default: $COLUMNS, else 100.
	Width int
	// Now is the clock; default time.Now. Tests set it.
	Now func() time.Time
}

// Progress renders a run's progress: on a terminal one line redrawn in
// place (step/total, loss with a sparkline of the last 20 values, learning
// rate, tokens/s, ETA); otherwise a plain line every Interval and at the
// end, for log files and CI. Logs written through LogWriter clear and
// redraw the line, so slog output and the progress line do not tangle.
// Safe for concurrent use.
type Progress struct {
	w        io.Writer
	terminal bool
	interval time.Duration
	width    int
	now      func() time.Time

	mu        sync.Mutex
	line      string // what is on screen now (terminal)
	lastDraw  time.Time
	firstAt   time.Time
	firstUnit int64 // step or rows at firstAt
	losses    []float64
	done      bool
}

// SparkWidth is how many recent losses the sparkline shows.
const SparkWidth = 20

// NewProgress returns a Progress writing to w.
func NewProgress(w io.Writer, o ProgressOptions) *Progress {
	p := &Progress{w: w, interval: o.Interval, width: o.Width, now: o.Now}
	if o.Terminal != nil {
		p.terminal = *o.Terminal
	} else {
		p.terminal = IsTerminal(w)
	}
	if p.interval <= 0 {
		p.interval = 30 * time.Second
	}
	if p.width <= 0 {
		p.width, _ = strconv.Atoi(os.Getenv("COLUMNS"))
		if p.width <= 20 {
			p.width = 100
		}
	}
	if p.now == nil {
		p.now = time.Now
	}
	return p
}

// IsTerminal reports whether w is a character device (a terminal) and TERM
// is not "dumb".
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Step shows a training step.
func (p *Progress) Step(s Step) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return
	}
	now := p.now()
	if p.firstAt.IsZero() {
		p.firstAt, p.firstUnit = now, s.Step
	}
	p.losses = append(p.losses, s.Loss)
	if len(p.losses) > SparkWidth {
		p.losses = p.losses[len(p.losses)-SparkWidth:]
	}
	last := s.TotalSteps > 0 && s.Step >= s.TotalSteps
	eta := p.eta(now, s.Step, s.TotalSteps, s.StepSeconds)
	if p.terminal {
		p.draw(now, last, p.stepLine(s, eta, true))
	} else {
		p.plain(now, last, p.stepLine(s, eta, false))
	}
}

// Score shows a scoring job's progress.
func (p *Progress) Score(r ScoreRow) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return
	}
	now := p.now()
	if p.firstAt.IsZero() {
		p.firstAt, p.firstUnit = now, r.RowsDone
	}
	last := r.RowsTotal > 0 && r.RowsDone >= r.RowsTotal
	perRow := 0.0
	if r.RowsPerSec > 0 {
		perRow = 1 / r.RowsPerSec
	}
	eta := p.eta(now, r.RowsDone, r.RowsTotal, perRow)
	var b strings.Builder
	fmt.Fprintf(&b, "score %s/%s rows", strconv.FormatInt(r.RowsDone, 10), strconv.FormatInt(r.RowsTotal, 10))
	if r.RowsTotal > 0 {
		fmt.Fprintf(&b, " %3.0f%%", 100*float64(r.RowsDone)/float64(r.RowsTotal))
	}
	fmt.Fprintf(&b, "  batches %d/%d", r.BatchesDone, r.BatchesTotal)
	if r.BatchesRetried > 0 {
		fmt.Fprintf(&b, " (%d retried)", r.BatchesRetried)
	}
	fmt.Fprintf(&b, "  %s rows/s  ETA %s", humanRate(r.RowsPerSec), fmtETA(eta))
	if p.terminal {
		p.draw(now, last, b.String())
	} else {
		p.plain(now, last, b.String())
	}
}

// Done ends the progress display: on a terminal it leaves the last line in
// place and moves to the next; otherwise it prints the last line if it was
// not printed yet. Later updates are ignored.
func (p *Progress) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return
	}
	p.done = true
	if p.terminal && p.line != "" {
		fmt.Fprint(p.w, "\r\x1b[K"+p.line+"\n")
		p.line = ""
	} else if !p.terminal && p.line != "" {
		fmt.Fprintln(p.w, p.line)
		p.line = ""
	}
}

// LogWriter returns a writer for log output that shares the Progress's
// output: on a terminal each write clears the progress line, writes, and
// redraws it; otherwise writes pass straight through.
func (p *Progress) LogWriter() io.Writer { return logWriter{p} }

type logWriter struct{ p *Progress }

func (l logWriter) Write(b []byte) (int, error) {
	p := l.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.terminal || p.line == "" || p.done {
		return p.w.Write(b)
	}
	if _, err := io.WriteString(p.w, "\r\x1b[K"); err != nil {
		return 0, err
	}
	n, err := p.w.Write(b)
	if err == nil {
		_, err = io.WriteString(p.w, p.line)
	}
	return n, err
}

// draw redraws the terminal line, at most every 100ms unless last.
func (p *Progress) draw(now time.Time, last bool, line string) {
	line = truncate(line, p.width-1)
	if !last && !p.lastDraw.IsZero() && now.Sub(p.lastDraw) < 100*time.Millisecond {
		p.line = line
		return
	}
	p.lastDraw, p.line = now, line
	fmt.Fprint(p.w, "\r\x1b[K"+line)
}

// plain prints a line when Interval has passed since the last one (and for
// the first and the last update); the line is kept for Done otherwise.
func (p *Progress) plain(now time.Time, last bool, line string) {
	if p.lastDraw.IsZero() || last || now.Sub(p.lastDraw) >= p.interval {
		p.lastDraw = now
		fmt.Fprintln(p.w, line)
		p.line = ""
		return
	}
	p.line = line
}

func (p *Progress) stepLine(s Step, eta time.Duration, fancy bool) string {
	var b strings.Builder
	if s.TotalSteps > 0 {
		fmt.Fprintf(&b, "step %d/%d %3.0f%%", s.Step, s.TotalSteps, 100*float64(s.Step)/float64(s.TotalSteps))
	} else {
		fmt.Fprintf(&b, "step %d", s.Step)
	}
	if fancy {
		fmt.Fprintf(&b, "  loss %s %s", fmtLoss(s.Loss), Sparkline(p.losses))
	} else {
		fmt.Fprintf(&b, "  loss %s", fmtLoss(s.Loss))
	}
	fmt.Fprintf(&b, "  lr %.2e  %s tok/s", s.LR, humanRate(s.TokensPerSec))
	if s.Workers > 1 {
		fmt.Fprintf(&b, "  %d workers", s.Workers)
		if s.StepSeconds > 0 && s.AllReduceSeconds > 0 {
			fmt.Fprintf(&b, " (all-reduce %.0f%%)", 100*s.AllReduceSeconds/s.StepSeconds)
		}
	}
	if s.TotalSteps > 0 {
		fmt.Fprintf(&b, "  ETA %s", fmtETA(eta))
	}
	return b.String()
}

// eta extrapolates the rate since the first update, or before a second
// update the caller's seconds per unit; -1 when unknown.
func (p *Progress) eta(now time.Time, done, total int64, perUnit float64) time.Duration {
	if total <= 0 {
		return -1
	}
	if done >= total {
		return 0
	}
	el := now.Sub(p.firstAt)
	n := done - p.firstUnit
	if n <= 0 || el <= 0 {
		if perUnit > 0 {
			return time.Duration(perUnit * float64(total-done) * float64(time.Second))
		}
		return -1
	}
	return time.Duration(float64(el) / float64(n) * float64(total-done))
}

func fmtLoss(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	return strconv.FormatFloat(v, 'f', 4, 64)
}

func fmtETA(d time.Duration) string {
	if d < 0 {
		return "?"
	}
	d = d.Round(time.Second)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	switch {
	case h > 0:
		return fmt.Sprintf("%dh%02dm", h, m)
	case m > 0:
		return fmt.Sprintf("%dm%02ds", m, s)
	}
	return fmt.Sprintf("%ds", s)
}

// humanRate formats a rate with k/M suffixes: 950, 12.3k, 4.56M.
func humanRate(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', 2, 64) + "M"
	case v >= 1e4:
		return strconv.FormatFloat(v/1e3, 'f', 1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

var sparks = []rune("▁▂▃▄▅▆▇█")

// Sparkline draws vs as block characters scaled between their minimum and
// maximum; NaN and infinite values are drawn as "!".
func Sparkline(vs []float64) string {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range vs {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	var b strings.Builder
	for _, v := range vs {
		switch {
		case math.IsNaN(v) || math.IsInf(v, 0):
			b.WriteByte('!')
		case hi == lo:
			b.WriteRune(sparks[len(sparks)/2])
		default:
			i := int(math.Round((v - lo) / (hi - lo) * float64(len(sparks)-1)))
			b.WriteRune(sparks[i])
		}
	}
	return b.String()
}

func truncate(s string, width int) string {
	if width <= 0 || utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:width-1]) + "…"
}
