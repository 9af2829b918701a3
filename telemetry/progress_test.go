package telemetry

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// fakeClock advances by step on every call.
type fakeClock struct {
	t    time.Time
	step time.Duration
}

func (c *fakeClock) now() time.Time { c.t = c.t.Add(c.step); return c.t }

func TestProgressPlain(t *testing.T) {
	var out bytes.Buffer
	clock := &fakeClock{t: time.Unix(0, 0), step: 10 * time.Second}
	off := false
	p := NewProgress(&out, ProgressOptions{Terminal: &off, Interval: 25 * time.Second, Now: clock.now})
	for i := int64(1); i <= 10; i++ {
		p.Step(Step{Step: i, TotalSteps: 10, Loss: 3 / float64(i), LR: 2e-4, TokensPerSec: 12345, Workers: 2, StepSeconds: 1, AllReduceSeconds: 0.25})
	}
	p.Done()
	p.Step(Step{Step: 11}) // ignored after Done
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	// First update, then every 25s of 10s steps (steps 4, 7), then the last.
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 4:\n%s", len(lines), out.String())
	}
	if strings.ContainsAny(out.String(), "\r\x1b") {
		t.Error("control characters in plain output")
	}
	want := "step 10/10 100%  loss 0.3000  lr 2.00e-04  12.3k tok/s  2 workers (all-reduce 25%)  ETA 0s"
	if lines[3] != want {
		t.Errorf("last line\n%q, want\n%q", lines[3], want)
	}
	if !strings.HasPrefix(lines[1], "step 4/10  40%") || !strings.HasSuffix(lines[1], "ETA 1m00s") {
		t.Errorf("line 2 = %q, want step 4 with ETA 1m00s (10s a step, 6 to go)", lines[1])
	}
}

func TestProgressPlainDoneFlushesPending(t *testing.T) {
	var out bytes.Buffer
	clock := &fakeClock{t: time.Unix(0, 0), step: time.Second}
	off := false
	p := NewProgress(&out, ProgressOptions{Terminal: &off, Now: clock.now})
	p.Step(Step{Step: 1, Loss: 1})
	p.Step(Step{Step: 2, Loss: 0.5}) // within the interval: held
	if strings.Count(out.String(), "\n") != 1 {
		t.Fatalf("output before Done: %q", out.String())
	}
	p.Done()
	if !strings.Contains(out.String(), "step 2  loss 0.5000") {
		t.Errorf("Done did not print the last held line: %q", out.String())
	}
}

func TestProgressTerminal(t *testing.T) {
	var out bytes.Buffer
	clock := &fakeClock{t: time.Unix(0, 0), step: time.Second}
	on := true
	p := NewProgress(&out, ProgressOptions{Terminal: &on, Width: 200, Now: clock.now})
	for i := int64(1); i <= 25; i++ {
		p.Step(Step{Step: i, TotalSteps: 100, Loss: float64(25 - i), LR: 1e-3, TokensPerSec: 2.5e6})
	}
	s := out.String()
	if strings.Contains(s, "\n") {
		t.Fatalf("newline before Done: %q", s)
	}
	draws := strings.Split(s, "\r\x1b[K")
	last := draws[len(draws)-1]
	wantSpark := Sparkline([]float64{19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0})
	if !strings.Contains(last, "step 25/100  25%  loss 0.0000 "+wantSpark+"  lr 1.00e-03  2.50M tok/s  ETA 1m15s") {
		t.Errorf("last draw = %q", last)
	}
	// Logs clear the line, print, and redraw it.
	fmt.Fprint(p.LogWriter(), "level=INFO msg=checkpoint\n")
	if !strings.HasSuffix(out.String(), "\r\x1b[Klevel=INFO msg=checkpoint\n"+last) {
		t.Errorf("log write: %q", out.String()[len(s):])
	}
	p.Done()
	if !strings.HasSuffix(out.String(), last+"\n") {
		t.Errorf("Done: %q", out.String())
	}
	fmt.Fprint(p.LogWriter(), "after\n")
	if !strings.HasSuffix(out.String(), last+"\nafter\n") {
		t.Errorf("log after Done: %q", out.String())
	}
}

func TestProgressTerminalRateLimit(t *testing.T) {
	var out bytes.Buffer
	clock := &fakeClock{t: time.Unix(0, 0), step: time.Millisecond}
	on := true
	p := NewProgress(&out, ProgressOptions{Terminal: &on, Width: 40, Now: clock.now})
	for i := int64(1); i <= 1000; i++ {
		p.Step(Step{Step: i, TotalSteps: 1000, Loss: 1})
	}
	draws := strings.Count(out.String(), "\r")
	// 1s of 1ms steps at one draw per 100ms, plus the first and the last.
	if draws < 5 || draws > 15 {
		t.Errorf("%d draws for 1000 steps in 1s", draws)
	}
	for _, d := range strings.Split(out.String(), "\r\x1b[K")[1:] {
		if n := len([]rune(d)); n > 39 {
			t.Errorf("draw of %d columns in a 40-column terminal: %q", n, d)
		}
	}
	if !strings.Contains(out.String(), "step 1000/1000") {
		t.Error("last step not drawn")
	}
}

func TestProgressScore(t *testing.T) {
	var out bytes.Buffer
	clock := &fakeClock{t: time.Unix(0, 0), step: 2 * time.Second}
	off := false
	p := NewProgress(&out, ProgressOptions{Terminal: &off, Now: clock.now})
	p.Score(ScoreRow{RowsDone: 0, RowsTotal: 1000, BatchesTotal: 10})
	p.Score(ScoreRow{RowsDone: 1000, RowsTotal: 1000, BatchesDone: 10, BatchesTotal: 10, BatchesRetried: 2, RowsPerSec: 500})
	want := "score 0/1000 rows   0%  batches 0/10  0 rows/s  ETA ?\n" +
		"score 1000/1000 rows 100%  batches 10/10 (2 retried)  500 rows/s  ETA 0s\n"
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
}

func TestSparkline(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want string
	}{
		{nil, ""},
		{[]float64{1, 1, 1}, "▅▅▅"},
		{[]float64{0, 7, 3.5}, "▁█▅"},
		{[]float64{2, math.NaN(), 1, math.Inf(1)}, "█!▁!"},
	} {
		if got := Sparkline(c.in); got != c.want {
			t.Errorf("Sparkline(%v) = %q, want %q", c.in, got, c.want)
		}
	}
	if IsTerminal(&bytes.Buffer{}) {
		t.Error("a buffer is not a terminal")
	}
}
