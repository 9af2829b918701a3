package live

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/herdml/herd/internal/proto"
	"github.com/herdml/herd/telemetry"
)

// ETA estimates how long a running job needs to reach its last step, from
// the pace of its recent steps (the time between the first and the last of
// RecentSteps, as rank 0 stamped them), or before two steps are known from
// the latest step's duration. ok is false when the job is not running or
// nothing says how fast it goes.
func ETA(j *proto.JobInfo) (eta time.Duration, ok bool) {
	if j.Status != proto.StatusRunning || j.TotalSteps <= 0 {
		return 0, false
	}
	left := j.TotalSteps - j.Step
	if left <= 0 {
		return 0, true
	}
	var perStep time.Duration
	if rs := j.RecentSteps; len(rs) >= 2 {
		first, last := rs[0], rs[len(rs)-1]
		if !first.At.IsZero() && !last.At.IsZero() && last.Step > first.Step && last.At.After(first.At) {
			perStep = last.At.Sub(first.At) / time.Duration(last.Step-first.Step)
		}
	}
	if perStep == 0 && j.StepMs > 0 {
		perStep = time.Duration(j.StepMs * float64(time.Millisecond))
	}
	if perStep == 0 {
		return 0, false
	}
	return perStep * time.Duration(left), true
}

// AllReduceShare is the fraction of the steps' wall time spent in the
// all-reduce, over the steps of groups of several workers (a world of one
// reduces nothing worth showing); ok is false when there are none, or no
// all-reduce time was measured.
func AllReduceShare(steps []proto.StepStat) (share float64, ok bool) {
	var ar, total float64
	for _, s := range steps {
		if s.World > 1 {
			ar += s.AllReduceMs
			total += s.StepMs
		}
	}
	if ar <= 0 || total <= 0 {
		return 0, false
	}
	return ar / total, true
}

// WriteJob writes a job's status for a person at a terminal: status,
// progress and ETA, loss with a sparkline of the recent steps, the latest
// evaluation, throughput, group, checkpoints, and the scoring phase with
// its metrics.
func WriteJob(w io.Writer, j *proto.JobInfo) error {
	var b strings.Builder
	fmt.Fprintf(&b, "job %s (%s): %s\n", j.ID, j.Name, j.Status)
	if j.Error != "" {
		fmt.Fprintf(&b, "  error        %s\n", j.Error)
	}
	row := func(label, format string, args ...any) {
		fmt.Fprintf(&b, "  %-12s %s\n", label, fmt.Sprintf(format, args...))
	}
	progress := fmt.Sprintf("%d/%d", j.Step, j.TotalSteps)
	if j.TotalSteps > 0 {
		progress += fmt.Sprintf(" (%.0f%%)", 100*float64(j.Step)/float64(j.TotalSteps))
	}
	if eta, ok := ETA(j); ok {
		progress += "  ETA " + eta.Round(time.Second).String()
	}
	if j.Kind != proto.KindScore {
		row("step", "%s", progress)
	}
	if j.Step > 0 && j.Kind != proto.KindScore {
		losses := make([]float64, len(j.RecentSteps))
		for i, s := range j.RecentSteps {
			losses[i] = s.Loss
		}
		loss := strconv.FormatFloat(j.Loss, 'f', 4, 64)
		if len(losses) > 1 {
			loss += "  " + telemetry.Sparkline(losses) + fmt.Sprintf("  (last %d logged steps)", len(losses))
		}
		row("loss", "%s", loss)
		if e := j.LastEval; e != nil {
			row("eval loss", "%.4f after step %d (%d tokens)", e.EvalLoss, e.Step, e.EvalTokens)
		}
		speed := fmt.Sprintf("%.0f tokens/s, %.0f ms/step", j.TokensPerSec, j.StepMs)
		if share, ok := AllReduceShare(j.RecentSteps); ok {
			speed += fmt.Sprintf(", all-reduce %.0f%%", 100*share)
		}
		row("throughput", "%s", speed)
	}
	group := fmt.Sprintf("epoch %d, world %d", j.Epoch, len(j.Members))
	if len(j.Members) > 0 {
		group += " [" + strings.Join(j.Members, " ") + "]"
	}
	if n := len(j.RecentSteps); n > 0 {
		group += fmt.Sprintf(", data epoch %d", j.RecentSteps[n-1].Epoch)
	}
	group += fmt.Sprintf(", restarts %d, global batch %d", j.Restarts, j.GlobalBatch)
	row("group", "%s", group)
	if n := len(j.Checkpoints); n > 0 {
		cp := j.Checkpoints[n-1]
		row("checkpoints", "%d, latest step %d: %s", n, cp.Step, cp.Path)
	}
	if j.Adapter != "" {
		row("adapter", "%s", j.Adapter)
	}
	row("output", "%s", j.OutputDir)
	if sc := j.Score; sc != nil {
		writeScore(row, sc)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeScore writes a job's scoring phase: plan, progress, per worker and
// the (partial) metrics.
func writeScore(row func(label, format string, args ...any), sc *proto.ScoreInfo) {
	what := sc.Data
	if sc.Adapter != "" {
		what += " with adapter " + sc.Adapter
	}
	row("scoring", "%s: %s → %s", sc.Phase, what, sc.Out)
	row("", "rows %d/%d, batches %d/%d done, %d in flight, %d retried, %d duplicates dropped",
		sc.RowsDone, sc.RowsTotal, sc.BatchesDone, sc.BatchesTotal, sc.BatchesInFlight, sc.BatchesRetried, sc.DuplicatesDropped)
	if sc.RowsPerSec > 0 {
		row("", "%.1f rows/s, ETA %s", sc.RowsPerSec, (time.Duration(sc.ETASec * float64(time.Second))).Round(time.Second))
	}
	for _, name := range slices.Sorted(maps.Keys(sc.Workers)) {
		wk := sc.Workers[name]
		row("", "worker %s: rows %d, batches %d, in flight %d, lost %d", name, wk.Rows, wk.Batches, wk.InFlight, wk.Lost)
	}
	if len(sc.Metrics) > 0 {
		label := "score metrics"
		if sc.Phase != "done" {
			label = "partial"
		}
		for _, k := range slices.Sorted(maps.Keys(sc.Metrics)) {
			v := "null"
			if p := sc.Metrics[k]; p != nil {
				v = strconv.FormatFloat(*p, 'g', 6, 64)
			}
			row(label, "%s %s", k, v)
			label = ""
		}
	}
}
