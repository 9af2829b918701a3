package live

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/herdml/herd/coordinator"
	"github.com/herdml/herd/internal/proto"
	"github.com/herdml/herd/internal/testutil"
)

// fakeSource is a coordinator's state made by hand.
type fakeSource struct {
	st         *coordinator.State
	ci         proto.ClusterInfo
	clusterErr error
	jobs       map[string]*proto.JobInfo // the leader's answers to JobStatus
}

func (f *fakeSource) ID() string                { return "c1" }
func (f *fakeSource) Role() string              { return "follower" }
func (f *fakeSource) State() *coordinator.State { return f.st }
func (f *fakeSource) ClusterStatus(context.Context) (proto.ClusterInfo, error) {
	return f.ci, f.clusterErr
}
func (f *fakeSource) JobStatus(_ context.Context, id string) (proto.JobInfo, error) {
	if f.jobs[id] == nil {
		return proto.JobInfo{}, errors.New("no such job")
	}
	return *f.jobs[id], nil
}

var t0 = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)

// logSteps logs n steps of a job whose loss falls from 3, each 100 ms with
// 20 ms of all-reduce, and an evaluation every 10 steps.
func logSteps(j *coordinator.Job, n, total int) {
	for i := 1; i <= n; i++ {
		j.LogSeq++
		st := &proto.StepStat{Step: i, TotalSteps: total, Epoch: i / 10, Loss: 3 / float64(i), Tokens: 100, World: 2,
			StepMs: 100, AllReduceMs: 20, TokensPerSec: 1000 + float64(i), At: t0.Add(time.Duration(i) * 100 * time.Millisecond)}
		if i%10 == 0 {
			st.EvalLoss, st.EvalTokens = 4/float64(i), 50
		}
		j.Log = append(j.Log, proto.LogEntry{Seq: j.LogSeq, Kind: "step", Step: st})
		j.Step, j.Loss, j.TokensPerSec, j.StepMs = i, 3/float64(i), 1000+float64(i), 100
	}
}

func newFake() *fakeSource {
	st := coordinator.NewState()
	done := &coordinator.Job{ID: "job-1", Name: "first", Status: proto.StatusCompleted, SubmittedAt: t0, TotalSteps: 5}
	logSteps(done, 5, 5)
	run := &coordinator.Job{ID: "job-2", Name: "second", Status: proto.StatusRunning, SubmittedAt: t0.Add(time.Minute), TotalSteps: 100,
		Epoch:       coordinator.GroupEpoch{Number: 3, Members: []string{"b", "a"}},
		Checkpoints: []proto.Checkpoint{{Step: 10, Path: "/out/checkpoints/step-10", Time: t0}},
		Log:         []proto.LogEntry{{Seq: 1, Kind: "event", Message: "group epoch 3: world 2 [b a]"}}, LogSeq: 1}
	logSteps(run, 30, 100)
	st.Jobs[done.ID], st.Jobs[run.ID] = done, run
	return &fakeSource{st: st, ci: proto.ClusterInfo{
		Leader:  "c0",
		Servers: []proto.ServerInfo{{ID: "c0", RaftAddr: "127.0.0.1:7000", Leader: true}, {ID: "c1", RaftAddr: "127.0.0.1:7001"}},
		Workers: []proto.WorkerInfo{{ID: "a", Device: "cpu", Alive: true, Job: "job-2"}, {ID: "b", Device: "cuda:0", Alive: true, Job: "job-2"}, {ID: "c", Device: "cpu"}},
	}}
}

func getState(t *testing.T, h http.Handler, query string) View {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/state"+query, nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /api/state%s: %d %s", query, rec.Code, rec.Header().Get("Content-Type"))
	}
	var v View
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode: %v\n%s", err, rec.Body.String())
	}
	return v
}

func TestState(t *testing.T) {
	v := getState(t, NewHandler(newFake(), nil), "")
	if v.Coordinator != "c1" || v.Role != "follower" || v.Leader != "c0" || len(v.Servers) != 2 || v.ClusterError != "" {
		t.Fatalf("header %+v", v)
	}
	if len(v.Jobs) != 2 || v.Jobs[0].ID != "job-1" || v.Jobs[1].ID != "job-2" {
		t.Fatalf("jobs %+v", v.Jobs)
	}
	ranks := map[string]int{}
	for _, w := range v.Workers {
		ranks[w.ID] = w.Rank
	}
	if ranks["b"] != 0 || ranks["a"] != 1 || ranks["c"] != -1 {
		t.Fatalf("ranks %v, want b 0, a 1, c -1", ranks)
	}
	// The running job is selected by default.
	j := v.Selected
	if j == nil || j.ID != "job-2" {
		t.Fatalf("selected %+v, want job-2", j)
	}
	if len(j.LossSeries) != 30 || j.LossSeries[0] != [2]float64{1, 3} || j.LossSeries[29] != [2]float64{30, 0.1} {
		t.Fatalf("loss curve %v", j.Loss)
	}
	if len(j.TokensPerSecSeries) != 30 || j.TokensPerSecSeries[29][1] != 1030 {
		t.Fatalf("tokens/s curve %v", j.TokensPerSecSeries)
	}
	if len(j.EvalSeries) != 3 || j.EvalSeries[0] != [2]float64{10, 0.4} || j.EvalSeries[2] != [2]float64{30, 4.0 / 30} {
		t.Fatalf("eval curve %v", j.EvalSeries)
	}
	if j.LastEval == nil || j.LastEval.Step != 30 {
		t.Fatalf("last eval %+v", j.LastEval)
	}
	if len(j.RecentSteps) != coordinator.RecentSteps || j.RecentSteps[len(j.RecentSteps)-1].Step != 30 {
		t.Fatalf("recent steps %d", len(j.RecentSteps))
	}
	// 70 steps left at 100 ms each.
	if j.ETASeconds == nil || math.Abs(*j.ETASeconds-7) > 1e-9 {
		t.Fatalf("ETA %v, want 7s", j.ETASeconds)
	}
	if j.AllReduceShare == nil || math.Abs(*j.AllReduceShare-0.2) > 1e-9 {
		t.Fatalf("all-reduce share %v, want 0.2", j.AllReduceShare)
	}
	if j.DataEpoch != 3 || len(j.Events) != 1 || j.Events[0].Message != "group epoch 3: world 2 [b a]" || len(j.Checkpoints) != 1 {
		t.Fatalf("detail %+v", j)
	}
	if j.Metrics != nil {
		t.Fatalf("metrics %v, want none", j.Metrics)
	}
}

func TestStateSelectsJob(t *testing.T) {
	h := NewHandler(newFake(), nil)
	if v := getState(t, h, "?job=job-1"); v.Selected == nil || v.Selected.ID != "job-1" || v.Selected.ETASeconds != nil || len(v.Selected.LossSeries) != 5 ||
		len(v.Selected.EvalSeries) != 0 || v.Selected.LastEval != nil {
		t.Fatalf("selected %+v", v.Selected)
	}
	// An unknown job falls back to the default.
	if v := getState(t, h, "?job=job-9"); v.Selected == nil || v.Selected.ID != "job-2" {
		t.Fatalf("selected %+v", v.Selected)
	}
	// With no running job, the newest.
	f := newFake()
	f.st.Jobs["job-2"].Status = proto.StatusCancelled
	if v := getState(t, NewHandler(f, nil), ""); v.Selected == nil || v.Selected.ID != "job-2" {
		t.Fatalf("selected %+v", v.Selected)
	}
	// And none at all.
	v := getState(t, NewHandler(&fakeSource{st: coordinator.NewState()}, nil), "")
	if v.Selected != nil || v.Jobs == nil || v.Workers == nil {
		t.Fatalf("empty state %+v", v)
	}
}

func TestStateWithoutLeader(t *testing.T) {
	f := newFake()
	f.clusterErr = errors.New("no leader")
	f.ci.Leader = ""
	for i := range f.ci.Workers {
		f.ci.Workers[i].Alive, f.ci.Workers[i].Job = false, ""
	}
	v := getState(t, NewHandler(f, nil), "")
	if v.ClusterError != "no leader" || v.Selected == nil || len(v.Selected.LossSeries) != 30 {
		t.Fatalf("view without leader %+v", v)
	}
	// The workers' jobs and ranks still show, from the local state.
	if w := v.Workers[1]; w.ID != "b" || w.Job != "job-2" || w.Rank != 0 {
		t.Fatalf("worker b without a leader: %+v", w)
	}
}

func TestThin(t *testing.T) {
	for _, n := range []int{0, 1, MaxPoints, MaxPoints + 1, 1234, 5000} {
		steps := make([]proto.StepStat, n)
		for i := range steps {
			steps[i].Step = i + 1
		}
		got := thin(steps, MaxPoints)
		if len(got) > MaxPoints || (n > MaxPoints && len(got) < MaxPoints/2) || (n <= MaxPoints && len(got) != n) {
			t.Fatalf("thin(%d) kept %d", n, len(got))
		}
		if n > 0 && got[len(got)-1].Step != n {
			t.Fatalf("thin(%d) lost the last step", n)
		}
		for i := 2; i < len(got); i++ {
			if got[i].Step-got[i-1].Step != got[1].Step-got[0].Step {
				t.Fatalf("thin(%d): uneven spacing at %d", n, i)
			}
		}
	}
}

func TestMetrics(t *testing.T) {
	type scored struct {
		ID      string         `json:"id"`
		Metrics map[string]any `json:"metrics,omitempty"`
	}
	m := Metrics(scored{ID: "job-1", Metrics: map[string]any{"accuracy": 0.91, "eval": map[string]any{"loss": 1.5}}})
	if m["accuracy"] != 0.91 || m["eval"].(map[string]any)["loss"] != 1.5 {
		t.Fatalf("metrics %v", m)
	}
	if m := Metrics(scored{ID: "job-1"}); m != nil {
		t.Fatalf("metrics of a job without any: %v", m)
	}
	// A phase's metrics, nested one level down; JSON nulls stay nil.
	one := 1.0
	nested := struct {
		ID    string `json:"id"`
		Steps []int  `json:"steps"`
		Score struct {
			Phase   string              `json:"phase"`
			Metrics map[string]*float64 `json:"metrics"`
		} `json:"score"`
	}{ID: "job-2", Steps: []int{1}}
	nested.Score.Phase = "done"
	nested.Score.Metrics = map[string]*float64{"exact_match": &one, "bleu": nil}
	if m := Metrics(nested); len(m) != 2 || m["exact_match"] != 1.0 || m["bleu"] != nil {
		t.Fatalf("nested metrics %v", m)
	}
	if m := Metrics(coordinator.Job{ID: "job-1"}); m != nil {
		t.Fatalf("metrics of a job record: %v", m)
	}
}

func TestPage(t *testing.T) {
	h := NewHandler(newFake(), nil)
	for path, want := range map[string]string{"/": "<title>herd live</title>", "/app.js": "api/state", "/style.css": "--accent"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("GET %s: %d, body lacks %q", path, rec.Code, want)
		}
	}
	// The page loads nothing from elsewhere: it must work offline.
	for _, f := range []string{"index.html", "app.js", "style.css"} {
		b, err := static.ReadFile("static/" + f)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"http://", "https://", "//cdn"} {
			if s := strings.ReplaceAll(string(b), "http://www.w3.org/2000/svg", ""); strings.Contains(s, bad) {
				t.Errorf("%s refers to %s", f, bad)
			}
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/api/state", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /api/state: %d, want 405", rec.Code)
	}
}

// TestLiveCoordinator serves a real coordinator's view: a follower shows
// the worker registered with the leader as alive, and Close stops the
// server and its goroutine.
func TestLiveCoordinator(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	c := testutil.MakeCluster(t, 2, nil)
	leader := c.WaitForLeader(10 * time.Second)
	follower := 1 - leader
	nc := c.Connect()
	ctx := testutil.Context(t, 10*time.Second)
	if err := proto.Call(ctx, nc, proto.SubjectRegister, testutil.Token, proto.RegisterRequest{ID: "w0", Host: "h", Device: "cpu"}, nil); err != nil {
		t.Fatal(err)
	}
	srv, err := Listen("127.0.0.1:0", c.Servers[follower], testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	var v View
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		res, err := http.Get(srv.URL() + "api/state")
		if err != nil {
			return err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		if v.ClusterError != "" || len(v.Workers) != 1 || !v.Workers[0].Alive {
			return fmt.Errorf("view %s", b)
		}
		return nil
	})
	if v.Role != "follower" || v.Coordinator != c.Servers[follower].ID() || v.Leader != c.Servers[leader].ID() || len(v.Servers) != 2 {
		t.Fatalf("view %+v", v)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(srv.URL()); err == nil {
		t.Fatal("the live view still answers after Close")
	}
	// Without a majority no leader answers: the view says so and still
	// shows what the follower knows (once it has applied the
	// registration).
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if c.Servers[follower].State().Workers["w0"] == nil {
			return errors.New("the follower has not applied the registration")
		}
		return nil
	})
	c.Stop(leader)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	v = Snapshot(ctx, c.Servers[follower], "", time.Now())
	if v.ClusterError == "" || len(v.Workers) != 1 || v.Workers[0].Alive || len(v.Servers) != 2 {
		t.Fatalf("view without a leader %+v", v)
	}
}

// TestStateLiveScore: a scoring job shows the leader's live progress and
// partial metrics, or its recorded progress when the leader does not
// answer.
func TestStateLiveScore(t *testing.T) {
	f := newFake()
	f.st.Jobs["job-3"] = &coordinator.Job{ID: "job-3", Kind: proto.KindScore, Status: proto.StatusRunning, SubmittedAt: t0.Add(time.Hour),
		Score: &coordinator.ScoreState{ScoreSpec: coordinator.ScoreSpec{Batches: 10, Rows: 100}, Accepted: []int{0, 1}, AcceptedRows: 20}}
	acc := 0.5
	f.jobs = map[string]*proto.JobInfo{"job-3": {ID: "job-3", Score: &proto.ScoreInfo{Phase: "scoring", RowsTotal: 100, RowsDone: 35,
		RowsPerSec: 12.5, ETASec: 5.2, Metrics: map[string]*float64{"accuracy": &acc, "bleu": nil}}}}
	v := getState(t, NewHandler(f, nil), "?job=job-3")
	sc := v.Selected.Score
	if sc == nil || sc.RowsDone != 35 || sc.RowsPerSec != 12.5 || v.Selected.Metrics["accuracy"] != 0.5 || v.Selected.Metrics["bleu"] != nil || len(v.Selected.Metrics) != 2 {
		t.Fatalf("live scoring %+v, metrics %v", sc, v.Selected.Metrics)
	}
	delete(f.jobs, "job-3")
	v = getState(t, NewHandler(f, nil), "?job=job-3")
	if sc := v.Selected.Score; sc == nil || sc.RowsDone != 20 || sc.BatchesDone != 2 || sc.RowsPerSec != 0 || v.Selected.Metrics != nil {
		t.Fatalf("recorded scoring %+v, metrics %v", sc, v.Selected.Metrics)
	}
}
