package coordinator

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/herdml/herd/internal/proto"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

type fsmHarness struct {
	t     *testing.T
	f     *FSM
	index uint64
}

func newFSMHarness(t *testing.T) *fsmHarness { return &fsmHarness{t: t, f: NewFSM(nil)} }

func (h *fsmHarness) apply(typ MessageType, cmd any) any {
	h.t.Helper()
	data, err := Encode(typ, cmd)
	if err != nil {
		h.t.Fatal(err)
	}
	h.index++
	return h.f.Apply(&raft.Log{Index: h.index, Type: raft.LogCommand, Data: data})
}

func (h *fsmHarness) mustApply(typ MessageType, cmd any) any {
	h.t.Helper()
	res := h.apply(typ, cmd)
	if err, ok := res.(error); ok {
		h.t.Fatalf("%s: %v", typ, err)
	}
	return res
}

// populate applies one command of every type.
func (h *fsmHarness) populate() string {
	h.mustApply(RegisterWorkerType, RegisterWorkerCmd{Worker: proto.RegisterRequest{ID: "w1", Host: "h1", Device: "cpu", PID: 10}, At: t0})
	h.mustApply(RegisterWorkerType, RegisterWorkerCmd{Worker: proto.RegisterRequest{ID: "w2", Host: "h2", Device: "cuda:0"}, At: t0})
	h.mustApply(RegisterWorkerType, RegisterWorkerCmd{Worker: proto.RegisterRequest{ID: "w3"}, At: t0})
	h.mustApply(DeregisterWorkerType, DeregisterWorkerCmd{ID: "w3", At: t0})
	id := h.mustApply(SubmitJobType, SubmitJobCmd{Name: "tiny", ConfigYAML: "a: 1\n", OutputDir: "/out", GlobalBatch: 8,
		Workers: 2, MinWorkers: 1, MaxRestarts: 3, HeartbeatMs: 200, TimeoutMs: 3000, TraceParent: tpJob, At: t0}).(string)
	h.mustApply(FormEpochType, FormEpochCmd{Job: id, Epoch: 1, Members: []string{"w1", "w2"}, Reason: "start", At: t0.Add(time.Second)})
	h.mustApply(StepStatsType, StepStatsCmd{Job: id, Stats: []proto.StepStat{{Step: 1, TotalSteps: 10, Loss: 2.5, Tokens: 100, World: 2}, {Step: 2, TotalSteps: 10, Loss: 2.25}}, At: t0.Add(2 * time.Second)})
	h.mustApply(CheckpointType, CheckpointCmd{Job: id, Step: 2, Path: "/out/checkpoints/checkpoint-2", At: t0.Add(3 * time.Second)})
	h.mustApply(WorkerFailureType, WorkerFailureCmd{Worker: "w2", Job: id, Error: "boom", At: t0.Add(4 * time.Second)})
	h.mustApply(FormEpochType, FormEpochCmd{Job: id, Epoch: 2, Members: []string{"w1"}, Restart: true, Reason: "w2 lost", TraceParent: tpEpoch, At: t0.Add(5 * time.Second)})
	return id
}

// Trace contexts of a job span and of a group epoch span.
const (
	tpJob   = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tpEpoch = "00-4bf92f3577b34da6a3ce929d0e0e4736-53995c3f42cd8ad8-01"
)

func TestFSMApplyEveryCommand(t *testing.T) {
	h := newFSMHarness(t)
	id := h.populate()
	s := h.f.State()
	if id != "job-1" || s.JobSeq != 1 {
		t.Fatalf("job id %q seq %d", id, s.JobSeq)
	}
	if len(s.Workers) != 2 || s.Workers["w2"].Failures != 1 || s.Workers["w1"].PID != 10 {
		t.Fatalf("workers %+v", s.Workers)
	}
	j := s.Jobs[id]
	if j.Status != proto.StatusRunning || j.Epoch.Number != 2 || !reflect.DeepEqual(j.Epoch.Members, []string{"w1"}) ||
		j.Epoch.StartStep != 2 || j.Restarts != 1 || j.Step != 2 || j.Loss != 2.25 || j.TotalSteps != 10 {
		t.Fatalf("job %+v", j)
	}
	if j.TraceParent != tpJob || j.Epoch.TraceParent != tpEpoch {
		t.Fatalf("trace parents: job %q, epoch %q", j.TraceParent, j.Epoch.TraceParent)
	}
	if cp := j.LatestCheckpoint(); cp == nil || cp.Step != 2 {
		t.Fatalf("checkpoint %+v", cp)
	}
	if !j.StartedAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("started %v", j.StartedAt)
	}
	// Stale epoch proposals are rejected as no-ops.
	res := h.apply(FormEpochType, FormEpochCmd{Job: id, Epoch: 2, Members: []string{"w1"}, At: t0})
	if err, ok := res.(error); !ok || !errors.Is(err, ErrRejected) {
		t.Fatalf("stale form epoch: %v", res)
	}
	if h.f.State() != s {
		t.Fatal("a rejected command changed the state")
	}
	h.mustApply(JobStatusType, JobStatusCmd{Job: id, Status: proto.StatusCompleted, Adapter: "/out/checkpoints/checkpoint-10", Step: 10, At: t0.Add(time.Minute)})
	j = h.f.State().Jobs[id]
	if j.Status != proto.StatusCompleted || j.Adapter == "" || j.Step != 10 || !j.EndedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("completed job %+v", j)
	}
	// The old state is untouched (copy on write).
	if s.Jobs[id].Status != proto.StatusRunning {
		t.Fatal("apply mutated a published state")
	}
	if res := h.apply(JobStatusType, JobStatusCmd{Job: id, Status: proto.StatusCancelled, At: t0}); !errors.Is(res.(error), ErrRejected) {
		t.Fatalf("cancel a completed job: %v", res)
	}
}

func TestFSMWaitPauseResumeExclude(t *testing.T) {
	h := newFSMHarness(t)
	id := h.populate()
	h.mustApply(JobStatusType, JobStatusCmd{Job: id, Status: proto.StatusWaiting, Message: "no workers", At: t0.Add(time.Hour)})
	if j := h.f.State().Jobs[id]; j.Status != proto.StatusWaiting || !j.WaitingSince.Equal(t0.Add(time.Hour)) {
		t.Fatalf("%+v", j)
	}
	h.mustApply(ResumeJobType, ResumeJobCmd{Job: id, At: t0})
	if j := h.f.State().Jobs[id]; j.Status != proto.StatusQueued || !j.WaitingSince.IsZero() {
		t.Fatalf("%+v", j)
	}
	h.mustApply(CheckpointType, CheckpointCmd{Job: id, Step: 3, Path: "p3", Paused: true, At: t0})
	if j := h.f.State().Jobs[id]; j.Status != proto.StatusPaused || len(j.Checkpoints) != 2 {
		t.Fatalf("%+v", j)
	}
	until := t0.Add(5 * time.Minute)
	h.mustApply(WorkerFailureType, WorkerFailureCmd{Worker: "w2", Error: "again", ExcludedUntil: until, At: t0})
	if w := h.f.State().Workers["w2"]; w.Failures != 0 || !w.ExcludedUntil.Equal(until) {
		t.Fatalf("%+v", w)
	}
	// Re-registration keeps the failure record.
	h.mustApply(RegisterWorkerType, RegisterWorkerCmd{Worker: proto.RegisterRequest{ID: "w2"}, At: t0})
	if w := h.f.State().Workers["w2"]; !w.ExcludedUntil.Equal(until) {
		t.Fatalf("%+v", w)
	}
}

func TestFSMSubmitIdempotent(t *testing.T) {
	h := newFSMHarness(t)
	a := h.mustApply(SubmitJobType, SubmitJobCmd{RequestID: "r1", Name: "x", GlobalBatch: 1, At: t0})
	b := h.mustApply(SubmitJobType, SubmitJobCmd{RequestID: "r1", Name: "x", GlobalBatch: 1, At: t0})
	c := h.mustApply(SubmitJobType, SubmitJobCmd{RequestID: "r2", Name: "x", GlobalBatch: 1, At: t0})
	if a != b || a == c || len(h.f.State().Jobs) != 2 {
		t.Fatalf("ids %v %v %v, %d jobs", a, b, c, len(h.f.State().Jobs))
	}
}

func TestFSMLogBounded(t *testing.T) {
	h := newFSMHarness(t)
	id := h.populate()
	stats := make([]proto.StepStat, MaxLogEntries+10)
	for i := range stats {
		stats[i] = proto.StepStat{Step: i + 1}
	}
	h.mustApply(StepStatsType, StepStatsCmd{Job: id, Stats: stats, At: t0})
	j := h.f.State().Jobs[id]
	if len(j.Log) != MaxLogEntries || j.Log[len(j.Log)-1].Seq != j.LogSeq || j.Step != len(stats) {
		t.Fatalf("log %d entries, seq %d, step %d", len(j.Log), j.LogSeq, j.Step)
	}
}

func TestFSMUnknownAndCorruptCommands(t *testing.T) {
	h := newFSMHarness(t)
	before := h.f.State()
	if res := h.f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{byte(IgnoreUnknownTypeFlag | 77), '{', '}'}}); res != nil {
		t.Fatalf("ignorable unknown command: %v", res)
	}
	if h.f.State() != before {
		t.Fatal("ignored command changed the state")
	}
	mustPanic(t, "unknown type", func() { h.f.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: []byte{77}}) })
	mustPanic(t, "undecodable", func() {
		h.f.Apply(&raft.Log{Index: 3, Type: raft.LogCommand, Data: append([]byte{byte(SubmitJobType)}, "{not json"...)})
	})
	mustPanic(t, "empty", func() { h.f.Apply(&raft.Log{Index: 4, Type: raft.LogCommand}) })
}

func mustPanic(t *testing.T, what string, fn func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Fatalf("%s: no panic", what)
		}
	}()
	fn()
}

// TestSnapshotRoundTrip checks every record type survives Persist and
// Restore: meta (job sequence), workers (with failures and cool-down), jobs
// (epoch, checkpoints, log, stats).
func TestSnapshotRoundTrip(t *testing.T) {
	h := newFSMHarness(t)
	h.populate()
	h.mustApply(WorkerFailureType, WorkerFailureCmd{Worker: "w1", Error: "x", ExcludedUntil: t0.Add(time.Hour), At: t0})
	h.mustApply(SubmitJobType, SubmitJobCmd{Name: "second", GlobalBatch: 4, Workers: 0, MinWorkers: 1, At: t0})
	want := h.f.State()

	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Apply goes on while the snapshot is persisted: it must not leak in.
	h.mustApply(SubmitJobType, SubmitJobCmd{Name: "after", GlobalBatch: 4, At: t0})
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	g := NewFSM(nil)
	if err := g.Restore(sink.reader()); err != nil {
		t.Fatal(err)
	}
	got := g.State()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("restored state differs:\n got %+v\nwant %+v", got, want)
	}
	for id, w := range want.Workers {
		if !reflect.DeepEqual(got.Workers[id], w) {
			t.Errorf("worker %s: %+v != %+v", id, got.Workers[id], w)
		}
	}
	for id, j := range want.Jobs {
		if !reflect.DeepEqual(got.Jobs[id], j) {
			t.Errorf("job %s differs", id)
		}
	}
	if got.JobSeq != 2 {
		t.Errorf("job seq %d", got.JobSeq)
	}
}

func TestSnapshotUnknownRecords(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteSnapshot(&buf, NewState()); err != nil {
		t.Fatal(err)
	}
	ok := append(bytes.Clone(buf.Bytes()), byte(IgnoreUnknownTypeFlag|9), 0, 0, 0, 2, '{', '}')
	if _, err := ReadSnapshot(bytes.NewReader(ok), nil); err != nil {
		t.Fatalf("ignorable record: %v", err)
	}
	bad := append(bytes.Clone(buf.Bytes()), 9, 0, 0, 0, 2, '{', '}')
	if _, err := ReadSnapshot(bytes.NewReader(bad), nil); err == nil {
		t.Fatal("unknown record accepted")
	}
	if _, err := ReadSnapshot(bytes.NewReader(nil), nil); err == nil {
		t.Fatal("empty snapshot accepted")
	}
}

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }
func (s *memSink) reader() *readCloser {
	return &readCloser{bytes.NewReader(s.Bytes())}
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }
