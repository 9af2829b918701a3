package live

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/herdml/herd/internal/proto"
)

func runningJob() *proto.JobInfo {
	j := &proto.JobInfo{ID: "job-2", Name: "tiny", Status: proto.StatusRunning, Step: 40, TotalSteps: 100,
		Loss: 1.25, TokensPerSec: 12345, StepMs: 250, Epoch: 3, Members: []string{"b", "a"}, Restarts: 1, GlobalBatch: 8,
		Checkpoints: []proto.Checkpoint{{Step: 20, Path: "/out/checkpoints/step-20"}, {Step: 40, Path: "/out/checkpoints/step-40"}},
		OutputDir:   "/out", LastEval: &proto.StepStat{Step: 30, EvalLoss: 1.5, EvalTokens: 900}}
	// Losses 8 7 6 5 4 3 2 1 at steps 33..40, one every 500 ms, a fifth of
	// each step in the all-reduce.
	for i := range 8 {
		j.RecentSteps = append(j.RecentSteps, proto.StepStat{Step: 33 + i, Epoch: 2, Loss: float64(8 - i), World: 2,
			StepMs: 250, AllReduceMs: 50, At: t0.Add(time.Duration(i) * 500 * time.Millisecond)})
	}
	return j
}

func TestWriteJob(t *testing.T) {
	var b strings.Builder
	j := runningJob()
	loss := 1.25
	j.Score = &proto.ScoreInfo{Phase: "scoring", Data: "/d/eval.jsonl", Out: "/out/scoring", RowsTotal: 100, RowsDone: 40,
		BatchesTotal: 10, BatchesDone: 4, BatchesInFlight: 2, Metrics: map[string]*float64{"loss": &loss, "accuracy": nil}}
	if err := WriteJob(&b, j); err != nil {
		t.Fatal(err)
	}
	want := `job job-2 (tiny): running
  step         40/100 (40%)  ETA 30s
  loss         1.2500  █▇▆▅▄▃▂▁  (last 8 logged steps)
  eval loss    1.5000 after step 30 (900 tokens)
  throughput   12345 tokens/s, 250 ms/step, all-reduce 20%
  group        epoch 3, world 2 [b a], data epoch 2, restarts 1, global batch 8
  checkpoints  2, latest step 40: /out/checkpoints/step-40
  output       /out
  scoring      scoring: /d/eval.jsonl → /out/scoring
               rows 40/100, batches 4/10 done, 2 in flight, 0 retried, 0 duplicates dropped
  partial      accuracy null
               loss 1.25
`
	if got := b.String(); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestWriteJobQueuedAndFailed(t *testing.T) {
	var b strings.Builder
	j := &proto.JobInfo{ID: "job-1", Name: "x", Status: proto.StatusQueued, TotalSteps: 10, OutputDir: "/o"}
	if err := WriteJob(&b, j); err != nil {
		t.Fatal(err)
	}
	// Nothing to say about loss, speed or time yet.
	for _, bad := range []string{"loss", "throughput", "ETA", "checkpoints", "metrics"} {
		if strings.Contains(b.String(), bad) {
			t.Errorf("a queued job's status mentions %s:\n%s", bad, b.String())
		}
	}
	b.Reset()
	j = runningJob()
	j.Status, j.Error, j.Adapter = proto.StatusFailed, "restart budget spent", ""
	if err := WriteJob(&b, j); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "  error        restart budget spent\n") || strings.Contains(b.String(), "ETA") {
		t.Errorf("failed job:\n%s", b.String())
	}
}

func TestETA(t *testing.T) {
	j := runningJob()
	// 7 steps in 3.5 s: 500 ms a step, 60 left.
	if eta, ok := ETA(j); !ok || eta != 30*time.Second {
		t.Fatalf("ETA %v %v, want 30s", eta, ok)
	}
	// One step known: its duration.
	j.RecentSteps = j.RecentSteps[:1]
	if eta, ok := ETA(j); !ok || eta != 15*time.Second {
		t.Fatalf("ETA from step_ms %v %v, want 15s", eta, ok)
	}
	j.StepMs = 0
	if _, ok := ETA(j); ok {
		t.Fatal("ETA without any pace")
	}
	j = runningJob()
	j.Status = proto.StatusWaiting
	if _, ok := ETA(j); ok {
		t.Fatal("ETA of a job that does not run")
	}
	j = runningJob()
	j.Step = j.TotalSteps
	if eta, ok := ETA(j); !ok || eta != 0 {
		t.Fatalf("ETA at the last step %v %v", eta, ok)
	}
}

func TestAllReduceShare(t *testing.T) {
	if s, ok := AllReduceShare(runningJob().RecentSteps); !ok || math.Abs(s-0.2) > 1e-12 {
		t.Fatalf("share %v %v", s, ok)
	}
	if _, ok := AllReduceShare([]proto.StepStat{{StepMs: 10, World: 2}}); ok {
		t.Fatal("a share without all-reduce time")
	}
	if _, ok := AllReduceShare([]proto.StepStat{{StepMs: 10, AllReduceMs: 1, World: 1}}); ok {
		t.Fatal("a share of a world of one")
	}
	if _, ok := AllReduceShare(nil); ok {
		t.Fatal("a share without steps")
	}
}
