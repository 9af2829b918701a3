package coordinator_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/herdml/herd/internal/proto"
	"github.com/herdml/herd/internal/testutil"
	"github.com/herdml/herd/scoring"
)

// scoreFixture writes n rows of different lengths and a scoring config.
func scoreFixture(t *testing.T, n, batch int) (yaml, out string) {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "eval.jsonl")
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "{\"id\":\"r%d\",\"text\":%q}\n", i, strings.Repeat("x", 1+(i*7)%23))
	}
	if err := os.WriteFile(data, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out = filepath.Join(dir, "out")
	yaml = fmt.Sprintf(`
model:
  path: /models/tiny
dataset:
  train: /data/train.jsonl
  eval: %s
output_dir: %s
scoring:
  batch_size: %d
cluster:
  workers: 2
  heartbeat: 100ms
  timeout: 2s
  max_restarts: 5
`, data, out, batch)
	return yaml, out
}

// fakePreds is a worker's result for rows: loss_sum = row index, one token.
func fakePreds(rows []int) json.RawMessage {
	preds := make([]scoring.Prediction, len(rows))
	for i, r := range rows {
		preds[i] = scoring.Prediction{Index: int64(r), ID: fmt.Sprintf("r%d", r), LossSum: float64(r), Tokens: 1,
			Choice: scoring.NoChoice, ChoiceNorm: scoring.NoChoice, Gold: scoring.NoChoice}
	}
	data, _ := json.Marshal(preds)
	return data
}

func lease(t *testing.T, nc *nats.Conn, worker, job, fp string, want int) proto.LeaseResult {
	t.Helper()
	var res proto.LeaseResult
	if err := call(t, nc, proto.SubjectScoreLease, proto.LeaseRequest{WorkerID: worker, Job: job, Fingerprint: fp, Want: want}, &res); err != nil {
		t.Fatal(err)
	}
	return res
}

func jobStatus(t *testing.T, nc *nats.Conn, id string) *proto.JobInfo {
	t.Helper()
	var st proto.StatusResult
	if err := call(t, nc, proto.SubjectStatus, proto.StatusRequest{Job: id}, &st); err != nil {
		t.Fatal(err)
	}
	return st.Job
}

// TestScoreFanOut drives the leader's scoring fan-out with workers played
// by the test: a plan fixed at submission, leases, a result chunked in two,
// a duplicated result, a dead worker's batch issued again, a leader
// failover after which recorded batches are not issued again, and the
// merged outputs.
func TestScoreFanOut(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	c := testutil.MakeCluster(t, 3, nil)
	nc := c.Connect()
	const rows, batch = 40, 4
	yaml, out := scoreFixture(t, rows, batch)

	// Without data to score the submission is refused.
	err := call(t, nc, proto.SubjectSubmit, proto.SubmitRequest{ConfigYAML: tinyYAML, Name: "s", Score: true}, nil)
	if !proto.IsCode(err, proto.CodeInvalid) || !strings.Contains(err.Error(), "scoring.data") {
		t.Fatalf("score without data: %v", err)
	}
	var sub proto.SubmitResult
	if err := call(t, nc, proto.SubjectSubmit, proto.SubmitRequest{ConfigYAML: yaml, Name: "s", Score: true}, &sub); err != nil {
		t.Fatal(err)
	}
	job := sub.Job
	if job.Kind != proto.KindScore || job.Score == nil || job.Score.BatchesTotal != rows/batch || job.Score.RowsTotal != rows {
		t.Fatalf("submitted %+v %+v", job, job.Score)
	}
	plan, fp, err := scoring.PlanFile(job.Score.Data, scoring.TaskLoss, batch)
	if err != nil || fp != job.Score.Fingerprint {
		t.Fatalf("plan fingerprint %s, job %s, err %v", fp, job.Score.Fingerprint, err)
	}

	w1 := &fakeWorker{id: "w1", nc: nc, state: proto.WorkerIdle}
	w2 := &fakeWorker{id: "w2", nc: nc, state: proto.WorkerIdle}
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		a1, a2 := w1.beat(t).Assignment, w2.beat(t).Assignment
		if a1 == nil || a2 == nil || a1.Score == nil || a2.Score == nil {
			return fmt.Errorf("assignments %+v %+v", a1, a2)
		}
		if a1.Score.Fingerprint != fp || a1.Score.Batches != len(plan) {
			t.Fatalf("score assignment %+v", a1.Score)
		}
		return nil
	})
	// A worker whose plan differs is refused.
	err = call(t, nc, proto.SubjectScoreLease, proto.LeaseRequest{WorkerID: "w1", Job: job.ID, Fingerprint: "other", Want: 1}, nil)
	if !proto.IsCode(err, proto.CodeInvalid) {
		t.Fatalf("lease with another plan: %v", err)
	}

	send := func(worker string, b, part, parts int, preds json.RawMessage) {
		t.Helper()
		if err := call(t, nc, proto.SubjectScoreResult, proto.ResultChunk{WorkerID: worker, Job: job.ID, Batch: b, Part: part, Parts: parts, Preds: preds}, nil); err != nil {
			t.Fatal(err)
		}
	}
	l1 := lease(t, nc, "w1", job.ID, fp, 2)
	l2 := lease(t, nc, "w2", job.ID, fp, 2)
	if len(l1.Batches) != 2 || len(l2.Batches) != 2 || slices.ContainsFunc(l1.Batches, func(b int) bool { return slices.Contains(l2.Batches, b) }) {
		t.Fatalf("leases %v %v", l1, l2)
	}
	// w1 returns its first batch in two chunks, and the result arrives
	// twice; its second batch never comes back (w1 dies).
	b := l1.Batches[0]
	rs := plan[b].Rows
	send("w1", b, 0, 2, fakePreds(rs[:2]))
	send("w1", b, 1, 2, fakePreds(rs[2:]))
	send("w1", b, 0, 2, fakePreds(rs[:2]))
	send("w1", b, 1, 2, fakePreds(rs[2:]))
	lost := l1.Batches[1]
	for _, b := range l2.Batches {
		send("w2", b, 0, 1, fakePreds(plan[b].Rows))
	}
	// w2 keeps beating, w1 not: w1's batch goes back to the queue.
	var recorded []int
	testutil.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		w2.beat(t)
		j := jobStatus(t, nc, job.ID)
		if w := j.Score.Workers["w1"]; w.Lost != 1 || j.Score.BatchesInFlight != 0 || j.Score.DuplicatesDropped != 1 || j.Score.BatchesDone != 3 {
			return fmt.Errorf("score %+v", j.Score)
		}
		return nil
	})
	// Every batch recorded as accepted before the failover must never be
	// leased again.
	j := jobStatus(t, nc, job.ID)
	if w := j.Score.Workers["w1"]; w.Lost != 1 || w.Batches != 1 {
		t.Fatalf("w1 progress %+v", j.Score.Workers)
	}
	recorded = append(recorded, b)
	recorded = append(recorded, l2.Batches...)

	// Fail over the leader; w2 finishes the plan with the new one.
	leader := c.WaitForLeader(5 * time.Second)
	c.Stop(leader)
	c.WaitForLeader(10 * time.Second)
	reissued := false
	deadline := time.Now().Add(30 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatal("scoring did not finish")
		}
		w2.beat(t)
		res := lease(t, nc, "w2", job.ID, fp, 2)
		if res.Done {
			break
		}
		for _, b := range res.Batches {
			if slices.Contains(recorded, b) {
				t.Fatalf("batch %d was recorded as accepted and leased again", b)
			}
			reissued = reissued || b == lost
			send("w2", b, 0, 1, fakePreds(plan[b].Rows))
		}
		if len(res.Batches) == 0 {
			time.Sleep(time.Duration(res.RetryMs) * time.Millisecond)
		}
	}
	if !reissued {
		t.Fatalf("the lost batch %d was never issued again", lost)
	}
	testutil.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		w2.beat(t)
		j = jobStatus(t, nc, job.ID)
		if j.Status != proto.StatusCompleted || j.Score.Phase != "done" {
			return fmt.Errorf("job %s, score %+v", j.Status, j.Score)
		}
		return nil
	})
	if v := j.Score.Metrics["loss"]; v == nil || *v != float64(rows-1)/2 {
		t.Fatalf("metrics %v", j.Score.Metrics)
	}
	if j.Score.BatchesRetried != 1 || j.Score.BatchesDone != len(plan) || j.Score.DuplicatesDropped != 1 {
		t.Fatalf("final counts %+v", j.Score)
	}
	// predictions.jsonl: every row once, in input order.
	f, err := os.Open(filepath.Join(out, "scoring", scoring.PredictionsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		var p struct {
			ID   string  `json:"id"`
			Loss float64 `json:"loss"`
		}
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			t.Fatal(err)
		}
		if p.ID != fmt.Sprintf("r%d", n) || p.Loss != float64(n) {
			t.Fatalf("line %d: %s", n, sc.Text())
		}
		n++
	}
	if n != rows {
		t.Fatalf("%d predictions, want %d", n, rows)
	}
	if _, err := os.Stat(filepath.Join(out, "scoring", scoring.MetricsFile)); err != nil {
		t.Fatal(err)
	}
	// A late copy of a result is acknowledged and changes nothing.
	send("w1", lost, 0, 1, fakePreds(plan[lost].Rows))
}
