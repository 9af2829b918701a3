package coordinator

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/herdml/herd/internal/proto"
)

func fp(v float64) *float64 { return &v }

// populateScore submits a scoring job and records leases, releases,
// accepts and duplicates; it returns the job id.
func (h *fsmHarness) populateScore() string {
	spec := &ScoreSpec{Data: "/d/eval.jsonl", Out: "/out/scoring", Task: "loss", BatchSize: 4, Fingerprint: "abc", Batches: 5, Rows: 18}
	id := h.mustApply(SubmitJobType, SubmitJobCmd{Name: "s", ConfigYAML: "a: 1\n", OutputDir: "/out", GlobalBatch: 1, Workers: 2, MinWorkers: 1,
		Kind: proto.KindScore, Score: spec, At: t0}).(string)
	h.mustApply(FormEpochType, FormEpochCmd{Job: id, Epoch: 1, Members: []string{"w1", "w2"}, At: t0})
	exp := t0.Add(time.Minute)
	h.mustApply(ScoreProgressType, ScoreProgressCmd{Job: id, Leases: []ScoreLeaseRec{{0, "w1", exp}, {1, "w2", exp}, {2, "w1", exp}}, At: t0})
	// Batch 0 accepted, batch 2's lease lost and batch 2 issued to w2.
	h.mustApply(ScoreProgressType, ScoreProgressCmd{Job: id, Accepted: []int{0}, Rows: 4, Released: []int{2}, Retried: 1, Duplicates: 2,
		Leases: []ScoreLeaseRec{{2, "w2", exp}}, At: t0.Add(time.Second)})
	return id
}

func TestFSMScoreCommands(t *testing.T) {
	h := newFSMHarness(t)
	id := h.populateScore()
	j := h.f.State().Jobs[id]
	sc := j.Score
	if j.Kind != proto.KindScore || sc == nil || !j.Scoring() {
		t.Fatalf("job %+v", j)
	}
	if !reflect.DeepEqual(sc.Accepted, []int{0}) || sc.AcceptedRows != 4 || sc.Retried != 1 || sc.Duplicates != 2 {
		t.Fatalf("score %+v", sc)
	}
	if len(sc.Leases) != 2 || sc.Leases[0].Batch != 1 || sc.Leases[1].Batch != 2 || sc.Leases[1].Worker != "w2" {
		t.Fatalf("leases %+v", sc.Leases)
	}
	// An accept recorded twice (a retried command) counts once; ids out
	// of the plan are ignored.
	h.mustApply(ScoreProgressType, ScoreProgressCmd{Job: id, Accepted: []int{2, 1, 0, 9}, Rows: 8, At: t0})
	sc = h.f.State().Jobs[id].Score
	if !reflect.DeepEqual(sc.Accepted, []int{0, 1, 2}) || sc.Leases != nil {
		t.Fatalf("after accepts: %+v", sc)
	}
	info := h.f.State().Jobs[id].Info(false)
	if info.Kind != proto.KindScore || info.Score.BatchesDone != 3 || info.Score.RowsDone != 12 || info.Score.Phase != "scoring" {
		t.Fatalf("info %+v", info.Score)
	}
	// The published state is never modified: an older pointer keeps its
	// values.
	before := h.f.State()
	h.mustApply(ScoreProgressType, ScoreProgressCmd{Job: id, Accepted: []int{3}, Rows: 3, At: t0})
	if len(before.Jobs[id].Score.Accepted) != 3 {
		t.Fatal("apply changed a published state")
	}
	h.mustApply(ScoreFinishType, ScoreFinishCmd{Job: id, Metrics: map[string]*float64{"loss": fp(1.5), "perplexity": nil}, Rows: 18, At: t0.Add(time.Hour)})
	j = h.f.State().Jobs[id]
	if j.Status != proto.StatusCompleted || !j.Score.Done || *j.Score.Metrics["loss"] != 1.5 || j.Scoring() || !j.EndedAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("finished %+v %+v", j, j.Score)
	}
	// Nothing more is recorded once finished.
	for typ, cmd := range map[MessageType]any{
		ScoreProgressType: ScoreProgressCmd{Job: id, Accepted: []int{4}, At: t0},
		ScoreFinishType:   ScoreFinishCmd{Job: id, At: t0},
		ScoreStartType:    ScoreStartCmd{Job: id, At: t0},
	} {
		if err, _ := h.apply(typ, cmd).(error); !errors.Is(err, ErrRejected) {
			t.Errorf("%s after finish: %v", typ, err)
		}
	}
	if err, _ := h.apply(SubmitJobType, SubmitJobCmd{Name: "x", Kind: proto.KindScore, At: t0}).(error); !errors.Is(err, ErrRejected) {
		t.Errorf("score job without a plan: %v", err)
	}
}

func TestFSMScoreStartAfterTraining(t *testing.T) {
	h := newFSMHarness(t)
	id := h.populate()
	spec := ScoreSpec{Data: "/d/eval.jsonl", Adapter: "/out/checkpoints/checkpoint-10", Out: "/out/scoring", Task: "loss", BatchSize: 8, Fingerprint: "f", Batches: 2, Rows: 10}
	h.mustApply(ScoreStartType, ScoreStartCmd{Job: id, Step: 10, Spec: spec, At: t0})
	j := h.f.State().Jobs[id]
	if j.Status != proto.StatusRunning || !j.Scoring() || j.Adapter != spec.Adapter || j.Step != 10 || j.Kind != "" {
		t.Fatalf("job %+v", j)
	}
	if err, _ := h.apply(ScoreStartType, ScoreStartCmd{Job: id, Spec: spec, At: t0}).(error); !errors.Is(err, ErrRejected) {
		t.Fatalf("second scoring phase: %v", err)
	}
	if err, _ := h.apply(ScoreStartType, ScoreStartCmd{Job: "job-9", Spec: spec, At: t0}).(error); !errors.Is(err, ErrRejected) {
		t.Fatalf("unknown job: %v", err)
	}
}

// TestSnapshotRoundTripScore: a job's scoring state survives Persist and
// Restore.
func TestSnapshotRoundTripScore(t *testing.T) {
	h := newFSMHarness(t)
	h.populate()
	id := h.populateScore()
	want := h.f.State()
	if want.Jobs[id].Score == nil || len(want.Jobs[id].Score.Leases) == 0 {
		t.Fatal("nothing to round-trip")
	}
	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	g := NewFSM(nil)
	if err := g.Restore(sink.reader()); err != nil {
		t.Fatal(err)
	}
	if got := g.State(); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored score job differs:\n got %+v\nwant %+v", got.Jobs[id].Score, want.Jobs[id].Score)
	}
	// And a finished one, with metrics (one of them null).
	h.mustApply(ScoreFinishType, ScoreFinishCmd{Job: id, Metrics: map[string]*float64{"loss": fp(0.25), "perplexity": nil}, At: t0})
	want = h.f.State()
	snap, _ = h.f.Snapshot()
	sink = &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	g = NewFSM(nil)
	if err := g.Restore(sink.reader()); err != nil {
		t.Fatal(err)
	}
	if got := g.State(); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored finished score job differs:\n got %+v\nwant %+v", got.Jobs[id].Score, want.Jobs[id].Score)
	}
}
