package coordinator_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/herdml/herd/coordinator"
	"github.com/herdml/herd/internal/proto"
	"github.com/herdml/herd/internal/testutil"
	"github.com/herdml/herd/telemetry"
)

// TestJobTrace: a submission stores its job span's context with the job; a
// retried submission (same request id) starts no second job span; a
// worker's heartbeat reply hands out the group epoch's context, stored
// with the epoch, in its headers.
func TestJobTrace(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	file := filepath.Join(t.TempDir(), "spans.jsonl")
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{ServiceName: "herd-coord", TraceFile: file, SampleRatio: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	c := testutil.MakeCluster(t, 1, func(_ int, cfg *coordinator.Config) { cfg.Telemetry = tel })
	nc := c.Connect()

	req := proto.SubmitRequest{ConfigYAML: tinyYAML, Name: "tiny", RequestID: "retried"}
	var first, again proto.SubmitResult
	if err := call(t, nc, proto.SubjectSubmit, req, &first); err != nil {
		t.Fatal(err)
	}
	if err := call(t, nc, proto.SubjectSubmit, req, &again); err != nil {
		t.Fatal(err)
	}
	if first.Job.ID != again.Job.ID {
		t.Fatalf("retried submission made job %s after %s", again.Job.ID, first.Job.ID)
	}
	leader := c.Servers[c.WaitForLeader(10*time.Second)]
	j := leader.State().Jobs[first.Job.ID]
	if j.TraceParent == "" {
		t.Fatal("the job has no trace context")
	}

	// Two workers: the job starts and the heartbeat reply carries the
	// epoch's context.
	ws := []*fakeWorker{{id: "w1", nc: nc, state: proto.WorkerIdle}, {id: "w2", nc: nc, state: proto.WorkerIdle}}
	var hdrTP string
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		for _, w := range ws {
			w.beat(t)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var res proto.HeartbeatResult
		hdr, err := proto.CallMsg(ctx, nc, proto.SubjectHeartbeat, testutil.Token, nil,
			proto.Heartbeat{WorkerID: "w1", IntervalMs: 100, State: proto.WorkerTraining}, &res)
		if err != nil {
			return err
		}
		if res.Assignment == nil {
			return errors.New("no assignment yet")
		}
		hdrTP = hdr.Get("traceparent")
		return nil
	})
	j = leader.State().Jobs[first.Job.ID]
	if j.Epoch.TraceParent == "" || hdrTP != j.Epoch.TraceParent {
		t.Fatalf("heartbeat reply traceparent %q, epoch's %q", hdrTP, j.Epoch.TraceParent)
	}

	if err := tel.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans, err := telemetry.ReadTraceFile(file)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]int{}
	for _, s := range spans {
		names[s.Name]++
		if want := j.TraceParent[3:35]; s.TraceID != want {
			t.Errorf("%s in trace %s, want the job's %s", s.Name, s.TraceID, want)
		}
	}
	if names[telemetry.SpanJob] != 1 || names[telemetry.SpanSchedule] == 0 || names[telemetry.SpanGroupEpoch] != 1 {
		t.Fatalf("spans %v, want one job, a schedule and one group.epoch", names)
	}
}
