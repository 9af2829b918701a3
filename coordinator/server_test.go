package coordinator_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/herdml/herd/coordinator"
	"github.com/herdml/herd/internal/proto"
	"github.com/herdml/herd/internal/testutil"
)

const tinyYAML = `
model:
  path: /models/tiny
dataset:
  train: /data/train.jsonl
training:
  max_steps: 10
  micro_batch_size: 2
cluster:
  workers: 2
  heartbeat: 100ms
  timeout: 2s
  max_restarts: 5
`

func call(t *testing.T, nc *nats.Conn, subj string, req, res any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return proto.Call(ctx, nc, subj, testutil.Token, req, res)
}

func submit(t *testing.T, nc *nats.Conn, yaml string) proto.JobInfo {
	t.Helper()
	var res proto.SubmitResult
	if err := call(t, nc, proto.SubjectSubmit, proto.SubmitRequest{ConfigYAML: yaml, Name: "tiny"}, &res); err != nil {
		t.Fatal(err)
	}
	return res.Job
}

// fakeWorker registers and heartbeats like a worker, reporting what the
// test sets.
type fakeWorker struct {
	id    string
	nc    *nats.Conn
	state string
	epoch uint64
	job   string
}

func (w *fakeWorker) beat(t *testing.T) proto.HeartbeatResult {
	t.Helper()
	var res proto.HeartbeatResult
	hb := proto.Heartbeat{WorkerID: w.id, IntervalMs: 100, Job: w.job, Epoch: w.epoch, State: w.state}
	if err := call(t, w.nc, proto.SubjectHeartbeat, hb, &res); err != nil {
		t.Fatal(err)
	}
	if res.Unknown {
		if err := call(t, w.nc, proto.SubjectRegister, proto.RegisterRequest{ID: w.id, Device: "cpu"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if a := res.Assignment; a != nil {
		w.job, w.epoch = a.Job, a.Epoch
		if w.state == proto.WorkerIdle {
			w.state = proto.WorkerTraining
		}
	}
	return res
}

func TestClusterAPIAndScheduling(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	c := testutil.MakeCluster(t, 3, nil)
	nc := c.Connect()

	// A wrong or missing token is refused with a hint.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err := proto.Call(ctx, nc, proto.SubjectJobs, "wrong", proto.JobsRequest{}, nil)
	cancel()
	if !proto.IsCode(err, proto.CodeBadToken) || !strings.Contains(err.Error(), "HERD_TOKEN") {
		t.Fatalf("wrong token: %v", err)
	}
	// A bad config is refused with every problem.
	err = call(t, nc, proto.SubjectSubmit, proto.SubmitRequest{ConfigYAML: "training:\n  lr: -1\n", Name: "bad"}, nil)
	if !proto.IsCode(err, proto.CodeInvalid) || !strings.Contains(err.Error(), "training.lr") {
		t.Fatalf("bad config: %v", err)
	}

	job := submit(t, nc, tinyYAML)
	if job.ID != "job-1" || job.Status != proto.StatusQueued || job.GlobalBatch != 4 {
		t.Fatalf("submitted %+v", job)
	}
	w1 := &fakeWorker{id: "w1", nc: nc, state: proto.WorkerIdle}
	w2 := &fakeWorker{id: "w2", nc: nc, state: proto.WorkerIdle}
	w3 := &fakeWorker{id: "w3", nc: nc, state: proto.WorkerIdle}
	var a1, a2 *proto.Assignment
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		a1, a2 = w1.beat(t).Assignment, w2.beat(t).Assignment
		if a1 == nil || a2 == nil {
			return fmt.Errorf("assignments %v %v", a1, a2)
		}
		return nil
	})
	if a1.Epoch != 1 || a1.World != 2 || a1.Rank == a2.Rank || a1.GlobalBatch != 4 || a1.ConfigYAML != tinyYAML {
		t.Fatalf("assignments %+v %+v", a1, a2)
	}

	// w2 reports a failed epoch (as a culprit); the group re-forms with w3
	// idle and ready: epoch 2 keeps both (w2 is not yet excluded).
	w3.beat(t)
	if err := call(t, nc, proto.SubjectFailure, proto.FailureReport{WorkerID: "w2", Job: job.ID, Epoch: 1, Error: "engine: boom", Culprit: true}, nil); err != nil {
		t.Fatal(err)
	}
	w2.state = proto.WorkerFailed
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		w1.beat(t)
		w3.beat(t)
		if a := w2.beat(t).Assignment; a == nil || a.Epoch != 2 {
			return fmt.Errorf("w2 assignment %+v", a)
		}
		return nil
	})
	w2.state = proto.WorkerTraining

	// Step statistics and a checkpoint are recorded.
	for s := 1; s <= 3; s++ {
		data := fmt.Sprintf(`{"worker_id":"w1","job":%q,"epoch":2,"stat":{"step":%d,"total_steps":10,"loss":%d}}`, job.ID, s, 10-s)
		if err := nc.PublishMsg(&nats.Msg{Subject: proto.SubjectStep, Header: nats.Header{proto.TokenHeader: {testutil.Token}}, Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := call(t, nc, proto.SubjectCheckpoint, proto.CheckpointReport{WorkerID: "w1", Job: job.ID, Epoch: 2, Step: 3, Path: "/out/checkpoint-3"}, nil); err != nil {
		t.Fatal(err)
	}
	var st proto.StatusResult
	testutil.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		if err := call(t, nc, proto.SubjectStatus, proto.StatusRequest{Job: job.ID}, &st); err != nil {
			return err
		}
		if st.Job.Step != 3 || len(st.Job.Checkpoints) != 1 || st.Job.Restarts != 1 {
			return fmt.Errorf("job %+v", st.Job)
		}
		return nil
	})

	// Kill the leader: a new one is elected, the state is intact, and the
	// workers keep their assignment.
	leader := c.WaitForLeader(5 * time.Second)
	start := time.Now()
	c.Stop(leader)
	c.WaitForLeader(10 * time.Second)
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if err := call(t, nc, proto.SubjectStatus, proto.StatusRequest{Job: job.ID}, &st); err != nil {
			return err
		}
		if st.Job.Step != 3 || st.Job.Epoch != 2 {
			return fmt.Errorf("after failover: %+v", st.Job)
		}
		return nil
	})
	t.Logf("leader failover: API answering again after %v", time.Since(start))
	for _, w := range []*fakeWorker{w1, w2, w3} {
		w.beat(t)
	}

	// The stopped coordinator restarts from its data dir and catches up.
	cfg := c.Configs[leader]
	cfg.Bootstrap, cfg.Join = false, ""
	c.Configs[leader] = cfg
	c.Start(leader)
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		j, ok := c.Servers[leader].State().Jobs[job.ID]
		if !ok || j.Step != 3 || j.Epoch.Number != 2 {
			return fmt.Errorf("restarted coordinator state: %+v", j)
		}
		return nil
	})

	// Complete, list, logs.
	if err := call(t, nc, proto.SubjectComplete, proto.CompleteReport{WorkerID: "w1", Job: job.ID, Epoch: 2, Step: 10, Adapter: "/out/checkpoint-10"}, nil); err != nil {
		t.Fatal(err)
	}
	var jobs proto.JobsResult
	if err := call(t, nc, proto.SubjectJobs, proto.JobsRequest{}, &jobs); err != nil || len(jobs.Jobs) != 1 || jobs.Jobs[0].Status != proto.StatusCompleted {
		t.Fatalf("jobs %+v %v", jobs, err)
	}
	var logs proto.LogsResult
	if err := call(t, nc, proto.SubjectLogs, proto.LogsRequest{Job: job.ID}, &logs); err != nil {
		t.Fatal(err)
	}
	var text []string
	for _, e := range logs.Entries {
		text = append(text, e.Kind+" "+e.Message)
	}
	joined := strings.Join(text, "\n")
	for _, want := range []string{"submitted", "group epoch 1", "worker w2 failed", "group epoch 2", "checkpoint at step 3", "completed"} {
		if !strings.Contains(joined, want) {
			t.Errorf("logs lack %q:\n%s", want, joined)
		}
	}
	if err := call(t, nc, proto.SubjectCancel, proto.CancelRequest{Job: job.ID}, nil); !proto.IsCode(err, proto.CodeConflict) {
		t.Fatalf("cancel a completed job: %v", err)
	}
	if err := call(t, nc, proto.SubjectStatus, proto.StatusRequest{Job: "job-9"}, nil); !proto.IsCode(err, proto.CodeNotFound) {
		t.Fatalf("status of an unknown job: %v", err)
	}
}

func TestWorkerLossAndWaiting(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	c := testutil.MakeCluster(t, 1, func(_ int, cfg *coordinator.Config) {
		cfg.WaitTimeout = 2 * time.Second
		cfg.WorkerGC = 3 * time.Second
	})
	nc := c.Connect()
	job := submit(t, nc, strings.Replace(tinyYAML, "workers: 2", "workers: 1", 1))
	w := &fakeWorker{id: "solo", nc: nc, state: proto.WorkerIdle}
	testutil.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		if w.beat(t).Assignment == nil {
			return fmt.Errorf("no assignment")
		}
		return nil
	})
	// Silence: the worker is declared lost, the job waits, then fails
	// after the wait timeout.
	var st proto.StatusResult
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if err := call(t, nc, proto.SubjectStatus, proto.StatusRequest{Job: job.ID}, &st); err != nil {
			return err
		}
		if st.Job.Status != proto.StatusFailed || !strings.Contains(st.Job.Error, "wait timeout") {
			return fmt.Errorf("job %s: %s", st.Job.Status, st.Job.Error)
		}
		return nil
	})
	// The silent worker is forgotten after WorkerGC.
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if _, ok := c.Servers[0].State().Workers["solo"]; ok {
			return fmt.Errorf("worker solo still registered")
		}
		return nil
	})
}

// TestRestartFromSnapshot: a coordinator restarted from a data dir whose
// log was compacted into a snapshot recovers the same state.
func TestRestartFromSnapshot(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	c := testutil.MakeCluster(t, 1, nil)
	nc := c.Connect()
	for range 5 {
		submit(t, nc, tinyYAML)
	}
	if err := c.Servers[0].Snapshot(); err != nil {
		t.Fatal(err)
	}
	submit(t, nc, tinyYAML) // one more entry after the snapshot
	want := c.Servers[0].State()
	nc.Close()
	c.Stop(0)
	cfg := c.Configs[0]
	cfg.Bootstrap = false
	c.Configs[0] = cfg
	c.Start(0)
	c.WaitForLeader(10 * time.Second)
	if err := c.Servers[0].WaitApplied(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	got := c.Servers[0].State()
	if len(got.Jobs) != 6 || got.JobSeq != want.JobSeq {
		t.Fatalf("restored %d jobs (seq %d), want 6 (seq %d)", len(got.Jobs), got.JobSeq, want.JobSeq)
	}
	for id, j := range want.Jobs {
		if g := got.Jobs[id]; g == nil || g.Status != j.Status || g.ConfigYAML != j.ConfigYAML || g.GlobalBatch != j.GlobalBatch || len(g.Log) != len(j.Log) {
			t.Fatalf("job %s: %+v, want %+v", id, g, j)
		}
	}
}

// TestFiveCoordinators: a 5-voter cluster survives losing two leaders in a
// row, and a voter can be removed and added back through the API.
func TestFiveCoordinators(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	c := testutil.MakeCluster(t, 5, nil)
	nc := c.Connect()
	submit(t, nc, tinyYAML)
	for range 2 {
		c.Stop(c.WaitForLeader(10 * time.Second))
		c.WaitForLeader(10 * time.Second)
		submit(t, nc, tinyYAML)
	}
	l := c.WaitForLeader(10 * time.Second)
	if n := len(c.Servers[l].State().Jobs); n != 3 {
		t.Fatalf("%d jobs after two failovers, want 3", n)
	}
	// Remove a dead coordinator (what an operator does before replacing a
	// machine), then add it back and restart it from its data dir.
	f := -1
	for i, s := range c.Servers {
		if s == nil {
			f = i
		}
	}
	var ci proto.ClusterInfo
	if err := call(t, nc, proto.SubjectRemoveVoter, proto.RemoveVoterRequest{ID: c.Configs[f].ID}, &ci); err != nil || len(ci.Servers) != 4 {
		t.Fatalf("remove voter: %v, %+v", err, ci)
	}
	if err := call(t, nc, proto.SubjectAddVoter, proto.AddVoterRequest{ID: c.Configs[f].ID, RaftAddr: c.Configs[f].RaftAddr}, &ci); err != nil || len(ci.Servers) != 5 {
		t.Fatalf("add voter: %v, %+v", err, ci)
	}
	cfg := c.Configs[f]
	cfg.Bootstrap, cfg.Join = false, ""
	c.Configs[f] = cfg
	c.Start(f)
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if n := len(c.Servers[f].State().Jobs); n != 3 {
			return fmt.Errorf("restarted voter has %d jobs", n)
		}
		return nil
	})
}
