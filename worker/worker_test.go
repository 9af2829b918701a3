package worker_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herdml/herd/configs"
	"github.com/herdml/herd/coordinator"
	"github.com/herdml/herd/dataset"
	"github.com/herdml/herd/internal/proto"
	"github.com/herdml/herd/internal/testutil"
	"github.com/herdml/herd/worker"
)

const (
	nSeqs       = 30
	globalBatch = 6
	totalSteps  = 12
)

type env struct {
	t   *testing.T
	c   *testutil.Cluster
	reg *registry
	out string
	wg  sync.WaitGroup
}

func newEnv(t *testing.T) *env {
	testutil.VerifyNoLeaks(t)
	e := &env{t: t, reg: newRegistry(), out: t.TempDir()}
	e.c = testutil.MakeCluster(t, 1, nil)
	t.Cleanup(e.wg.Wait) // runs before the cluster closes
	return e
}

func (e *env) yaml(workers int, extra string) string {
	return fmt.Sprintf(`
model:
  path: /fake/model
dataset:
  train: /fake/train.jsonl
output_dir: %s
training:
  max_steps: %d
  micro_batch_size: 2
  global_batch_size: %d
  checkpoint_every: 4
cluster:
  workers: %d
  min_workers: 1
  heartbeat: 100ms
  timeout: 5s
  max_restarts: 5
%s`, e.out, totalSteps, globalBatch, workers, extra)
}

// startWorker runs a worker until the returned stop is called (a crash, as
// far as the coordinator can tell: it stops heartbeating) or the test ends.
func (e *env) startWorker(id string, delay time.Duration, edit func(*worker.Config)) (stop func()) {
	cfg := worker.Config{ID: id, URL: e.c.URLs(), Token: testutil.Token, NewEngine: e.reg.factory(id, delay),
		LoadData: fakeLoader(nSeqs), ResolveModel: func(p, _ string) (string, error) { return p, nil },
		Logger: testutil.Logger(e.t).With("w", id)}
	if edit != nil {
		edit(&cfg)
	}
	w, err := worker.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	e.wg.Go(func() {
		defer close(done)
		defer w.Close()
		if err := w.Run(ctx); err != nil {
			e.t.Errorf("worker %s: %v", id, err)
		}
	})
	stop = sync.OnceFunc(func() { cancel(); <-done })
	e.t.Cleanup(stop)
	return stop
}

func (e *env) submit(yaml string) string {
	nc := e.c.Connect()
	var res proto.SubmitResult
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := proto.Call(ctx, nc, proto.SubjectSubmit, testutil.Token, proto.SubmitRequest{ConfigYAML: yaml, Name: "fake"}, &res); err != nil {
		e.t.Fatal(err)
	}
	return res.Job.ID
}

func (e *env) job(id string) *coordinator.Job {
	return e.c.Servers[e.c.WaitForLeader(10*time.Second)].State().Jobs[id]
}

func (e *env) waitStatus(id, status string, wait time.Duration) *coordinator.Job {
	e.t.Helper()
	var j *coordinator.Job
	testutil.CheckFor(e.t, wait, 20*time.Millisecond, func() error {
		j = e.job(id)
		if j == nil || j.Status != status {
			if j != nil && proto.Terminal(j.Status) {
				e.t.Fatalf("job %s: %s (%s)", id, j.Status, j.Error)
			}
			return fmt.Errorf("job %+v", j)
		}
		return nil
	})
	return j
}

// reference is the parameters of an uninterrupted single-worker run.
func reference(t *testing.T) []float32 {
	var want []float32
	t.Run("reference", func(t *testing.T) {
		e := newEnv(t)
		e.startWorker("ref", 0, nil)
		id := e.submit(e.yaml(1, ""))
		e.waitStatus(id, proto.StatusCompleted, 20*time.Second)
		want = e.reg.final["ref"]
	})
	if want == nil {
		t.FailNow()
	}
	return want
}

func TestDataParallelEquivalence(t *testing.T) {
	var want []float32
	for _, world := range []int{1, 2, 3} {
		t.Run(fmt.Sprint(world), func(t *testing.T) {
			e := newEnv(t)
			for i := range world {
				e.startWorker(fmt.Sprintf("w%d", i), 0, nil)
			}
			id := e.submit(e.yaml(world, ""))
			j := e.waitStatus(id, proto.StatusCompleted, 20*time.Second)
			if j.Step != totalSteps || j.Restarts != 0 || len(j.Epoch.Members) != world {
				t.Fatalf("job %+v", j)
			}
			if want := filepath.Join(e.out, "checkpoints", fmt.Sprintf("checkpoint-%d", totalSteps)); j.Adapter != want {
				t.Fatalf("adapter %s, want %s", j.Adapter, want)
			}
			if n := len(j.Checkpoints); n != 3 {
				t.Fatalf("%d checkpoints, want 3 (steps 4, 8, 12)", n)
			}
			// Every member ends with the same parameters, and the same as
			// with any other world size.
			var got []float32
			for i := range world {
				p := e.reg.final[fmt.Sprintf("w%d", i)]
				if got == nil {
					got = p
				} else if !slices.Equal(got, p) {
					t.Fatalf("members differ: %v vs %v", got, p)
				}
			}
			if want == nil {
				want = got
			} else if !slices.Equal(got, want) {
				t.Fatalf("world %d ends with %v, world 1 with %v", world, got, want)
			}
			// Every global batch was trained on exactly once, across the
			// members.
			checkEveryBatchOnce(t, e)
		})
	}
}

// TestEngineErrorRegroups: an engine error on one worker fails the epoch;
// the group re-forms and the run ends as an uninterrupted one does.
func TestEngineErrorRegroups(t *testing.T) {
	want := reference(t)
	e := newEnv(t)
	e.startWorker("a", 0, nil)
	e.startWorker("b", 0, func(c *worker.Config) { c.FailAtStep = 5 })
	id := e.submit(e.yaml(2, ""))
	j := e.waitStatus(id, proto.StatusCompleted, 30*time.Second)
	if j.Restarts < 1 || j.Epoch.Number < 2 {
		t.Fatalf("no re-formation: %+v", j)
	}
	for _, w := range []string{"a", "b"} {
		if got := e.reg.final[w]; !slices.Equal(got, want) {
			t.Fatalf("%s ends with %v, reference %v", w, got, want)
		}
	}
	var log []string
	for _, l := range j.Log {
		log = append(log, l.Message)
	}
	if !strings.Contains(strings.Join(log, "\n"), "injected failure at step 5") {
		t.Fatalf("log lacks the failure:\n%s", strings.Join(log, "\n"))
	}
}

// TestWorkerLostAndReplaced: a worker dies mid-run; the survivor goes on
// alone, a new worker joins and gets the state, and the run ends as an
// uninterrupted one does.
func TestWorkerLostAndReplaced(t *testing.T) {
	want := reference(t)
	e := newEnv(t)
	var once sync.Once
	died := make(chan struct{})
	e.startWorker("a", 5*time.Millisecond, nil)
	stopB := e.startWorker("b", 5*time.Millisecond, nil)
	e.reg.mu.Lock()
	e.reg.hook = func(w string, step int) {
		if w == "b" && step == 3 {
			once.Do(func() { close(died) })
		}
	}
	e.reg.mu.Unlock()
	id := e.submit(e.yaml(2, ""))
	<-died
	go stopB()
	// The survivor continues alone, then a newcomer joins.
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if j := e.job(id); len(j.Epoch.Members) != 1 || j.Epoch.Number < 2 {
			return fmt.Errorf("epoch %+v", j.Epoch)
		}
		return nil
	})
	e.startWorker("c", 5*time.Millisecond, nil)
	j := e.waitStatus(id, proto.StatusCompleted, 30*time.Second)
	if j.Restarts < 1 {
		t.Fatalf("job %+v", j)
	}
	if got := e.reg.final["a"]; !slices.Equal(got, want) {
		t.Fatalf("a ends with %v, reference %v", got, want)
	}
	if !slices.Contains(j.Epoch.Members, "c") {
		t.Logf("c did not join before the end (members %v)", j.Epoch.Members)
	} else if got := e.reg.final["c"]; !slices.Equal(got, want) {
		t.Fatalf("c ends with %v, reference %v", got, want)
	}
}

// TestAllLostResumesFromCheckpoint: every worker dies; the job waits; a new
// worker restores the latest checkpoint and finishes.
func TestAllLostResumesFromCheckpoint(t *testing.T) {
	want := reference(t)
	e := newEnv(t)
	died := make(chan struct{})
	var once sync.Once
	stopA := e.startWorker("a", 5*time.Millisecond, nil)
	e.reg.mu.Lock()
	e.reg.hook = func(w string, step int) {
		if w == "a" && step == 6 {
			once.Do(func() { close(died) })
		}
	}
	e.reg.mu.Unlock()
	id := e.submit(e.yaml(1, ""))
	<-died
	stopA()
	j := e.waitStatus(id, proto.StatusWaiting, 10*time.Second)
	if cp := j.LatestCheckpoint(); cp == nil || cp.Step != 4 {
		t.Fatalf("checkpoint %+v", cp)
	}
	e.startWorker("z", 0, nil)
	e.waitStatus(id, proto.StatusCompleted, 20*time.Second)
	if got := e.reg.final["z"]; !slices.Equal(got, want) {
		t.Fatalf("z ends with %v, reference %v", got, want)
	}
}

func TestBadTokenAndFatalConfig(t *testing.T) {
	e := newEnv(t)
	w, err := worker.New(worker.Config{ID: "x", URL: e.c.URLs(), Token: "wrong", NewEngine: e.reg.factory("x", 0), StartTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = w.Run(context.Background())
	w.Close()
	if err == nil || !strings.Contains(err.Error(), "join token") {
		t.Fatalf("bad token: %v", err)
	}
	// A model the worker cannot find fails the job with the reason.
	e.startWorker("m", 0, func(c *worker.Config) {
		c.ResolveModel = func(p, _ string) (string, error) { return "", fmt.Errorf("model directory %s: no such file", p) }
	})
	id := e.submit(e.yaml(1, ""))
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		j := e.job(id)
		if j.Status != proto.StatusFailed || !strings.Contains(j.Error, "no such file") {
			return fmt.Errorf("job %s: %s", j.Status, j.Error)
		}
		return nil
	})
}

// TestLocalGroup: one worker driving two local engines (LocalGroup) ends
// exactly where two workers (and one) do.
func TestLocalGroup(t *testing.T) {
	want := reference(t)
	e := newEnv(t)
	e.startWorker("duo", 0, func(c *worker.Config) {
		c.Device = "cpu,cpu"
		c.NewEngine = func(ctx context.Context, spec worker.EngineSpec) (worker.Engine, error) {
			var engs []worker.Engine
			for i, d := range strings.Split(spec.Device, ",") {
				one := spec
				one.Device = d
				eng, err := e.reg.factory(fmt.Sprintf("duo/%d", i), 0)(ctx, one)
				if err != nil {
					return nil, err
				}
				engs = append(engs, eng)
			}
			return worker.NewLocalGroup(engs)
		}
	})
	id := e.submit(e.yaml(1, ""))
	e.waitStatus(id, proto.StatusCompleted, 20*time.Second)
	for _, dev := range []string{"duo/0", "duo/1"} {
		if got := e.reg.final[dev]; !slices.Equal(got, want) {
			t.Fatalf("%s ends with %v, reference %v", dev, got, want)
		}
	}
	// The devices split every global batch: each sequence once in all.
	checkEveryBatchOnce(t, e)
}

// checkEveryBatchOnce checks that the sequences trained at each step are
// exactly the plan's global batch.
func checkEveryBatchOnce(t *testing.T, e *env) {
	t.Helper()
	plan := dataset.Plan{N: nSeqs, G: globalBatch, Seed: 42}
	for k := 1; k <= totalSteps; k++ {
		pos := plan.At(k - 1)
		var want []int64
		for _, i := range plan.Global(pos.Epoch, pos.Step) {
			want = append(want, int64(1000+i))
		}
		seen := slices.Clone(e.reg.steps[k])
		slices.Sort(seen)
		slices.Sort(want)
		if !slices.Equal(seen, want) {
			t.Fatalf("step %d trained %v, want %v", k, seen, want)
		}
	}
}

// TestEvalEvery: with training.eval_every, every member evaluates its share
// of the eval set after steps 4, 8 and 12; rank 0 reports the loss of the
// whole set, the same with 1 and 2 workers and equal to scoring the set in
// one pass.
func TestEvalEvery(t *testing.T) {
	eval := fakeData{n: 9}
	idx := make([]int, eval.n)
	for i := range idx {
		idx[i] = i
	}
	ids, labels, rows, seqLen := eval.Batch(idx)
	for _, world := range []int{1, 2} {
		t.Run(fmt.Sprint(world), func(t *testing.T) {
			e := newEnv(t)
			for i := range world {
				e.startWorker(fmt.Sprintf("w%d", i), 0, func(c *worker.Config) {
					c.LoadData = func(context.Context, *configs.Config, string) (worker.Data, func() error, error) {
						return fakeEvalData{fakeData: fakeData{n: nSeqs}, eval: eval}, func() error { return nil }, nil
					}
				})
			}
			y := strings.Replace(e.yaml(world, ""), "checkpoint_every: 4", "checkpoint_every: 4\n  eval_every: 4\n  log_every: 100", 1)
			y = strings.Replace(y, "train: /fake/train.jsonl", "train: /fake/train.jsonl\n  eval: /fake/eval.jsonl", 1)
			id := e.submit(y)
			j := e.waitStatus(id, proto.StatusCompleted, 20*time.Second)
			var got []int
			for _, l := range j.Log {
				if l.Step == nil || l.Step.EvalTokens == 0 {
					continue
				}
				got = append(got, l.Step.Step)
				want := fakeEval(worker.Batch{IDs: ids, Labels: labels, B: rows, S: seqLen}, l.Step.Step)
				if l.Step.EvalTokens != want.Tokens || l.Step.EvalLoss != want.LossSum/float64(want.Tokens) {
					t.Fatalf("step %d: eval loss %v over %d tokens, want %v over %d", l.Step.Step, l.Step.EvalLoss, l.Step.EvalTokens,
						want.LossSum/float64(want.Tokens), want.Tokens)
				}
			}
			if !slices.Equal(got, []int{4, 8, 12}) {
				t.Fatalf("evaluations after steps %v, want 4, 8, 12 (reported although log_every is 100)", got)
			}
		})
	}
}
