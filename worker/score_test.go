package worker_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herdml/herd/coordinator"
	"github.com/herdml/herd/internal/proto"
	"github.com/herdml/herd/internal/testutil"
	"github.com/herdml/herd/scoring"
	"github.com/herdml/herd/worker"
)

// fakeScorer predicts loss_sum = row index for every row, with a long id
// so that a batch's result exceeds a small max_payload and is chunked.
type fakeScorer struct {
	rows    int
	scored  *atomic.Int64
	onScore func()
}

func (s *fakeScorer) Rows() int { return s.rows }
func (s *fakeScorer) Close()    {}
func (s *fakeScorer) Score(rows []int) ([]scoring.Prediction, error) {
	if s.onScore != nil {
		s.onScore()
	}
	s.scored.Add(1)
	preds := make([]scoring.Prediction, len(rows))
	for i, r := range rows {
		preds[i] = scoring.Prediction{Index: int64(r), ID: fmt.Sprintf("%05d-%s", r, strings.Repeat("p", 1500)), LossSum: float64(r), Tokens: 1,
			Choice: scoring.NoChoice, ChoiceNorm: scoring.NoChoice, Gold: scoring.NoChoice}
	}
	return preds, nil
}

type scoreEnv struct {
	*env
	scored  atomic.Int64
	mu      sync.Mutex
	adapter map[string]string // worker → adapter it was asked to score with
	hook    func(worker string)
}

func newScoreEnv(t *testing.T) *scoreEnv {
	testutil.VerifyNoLeaks(t)
	e := &scoreEnv{env: &env{t: t, reg: newRegistry(), out: t.TempDir()}, adapter: map[string]string{}}
	// A small max_payload: every batch result is sent in chunks.
	e.c = testutil.MakeCluster(t, 1, func(_ int, c *coordinator.Config) { c.NATSMaxPayload = 8 << 10 })
	t.Cleanup(e.wg.Wait)
	return e
}

func (e *scoreEnv) startScorer(id string, delay time.Duration) func() {
	return e.startWorker(id, 0, func(c *worker.Config) {
		c.StepDelay = delay
		c.NewScorer = func(_ context.Context, spec worker.ScorerSpec) (worker.Scorer, error) {
			lengths, err := scoring.RowBytes(spec.Data)
			if err != nil {
				return nil, err
			}
			e.mu.Lock()
			e.adapter[id] = spec.Adapter
			e.mu.Unlock()
			return &fakeScorer{rows: len(lengths), scored: &e.scored, onScore: func() {
				e.mu.Lock()
				h := e.hook
				e.mu.Unlock()
				if h != nil {
					h(id)
				}
			}}, nil
		}
	})
}

func writeRows(t *testing.T, n int) string {
	path := filepath.Join(t.TempDir(), "eval.jsonl")
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "{\"text\":%q}\n", strings.Repeat("w ", 1+i%13))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func checkPredictions(t *testing.T, dir string, n int) {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, scoring.PredictionsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	i := 0
	for sc.Scan() {
		var p struct {
			ID   string  `json:"id"`
			Loss float64 `json:"loss"`
		}
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(p.ID, fmt.Sprintf("%05d-", i)) || p.Loss != float64(i) {
			t.Fatalf("row %d: id %.10s loss %v", i, p.ID, p.Loss)
		}
		i++
	}
	if i != n {
		t.Fatalf("%d predictions, want %d", i, n)
	}
}

// TestScoreWorkerLost: two workers score a job; one stops mid-job (as if
// killed); the other finishes, the outputs hold every row once in order,
// and only the dead worker's unfinished batches were scored twice.
func TestScoreWorkerLost(t *testing.T) {
	e := newScoreEnv(t)
	const rows, batch = 60, 4
	data := writeRows(t, rows)
	e.startScorer("a", 20*time.Millisecond)
	stopB := e.startScorer("b", 20*time.Millisecond)
	var bScored atomic.Int64
	died := make(chan struct{})
	var once sync.Once
	e.mu.Lock()
	e.hook = func(w string) {
		if w == "b" && bScored.Add(1) == 3 {
			once.Do(func() { close(died) })
		}
	}
	e.mu.Unlock()
	nc := e.c.Connect()
	yaml := e.yaml(2, fmt.Sprintf("scoring:\n  data: %s\n  batch_size: %d\n", data, batch))
	var res proto.SubmitResult
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := proto.Call(ctx, nc, proto.SubjectSubmit, testutil.Token, proto.SubmitRequest{ConfigYAML: yaml, Name: "s", Score: true}, &res); err != nil {
		t.Fatal(err)
	}
	<-died
	go stopB()
	j := e.waitStatus(res.Job.ID, proto.StatusCompleted, 60*time.Second)
	checkPredictions(t, coordinator.ScoreDir(e.out), rows)
	batches := int64(rows / batch)
	// b held at most 2 leases (the window) when it stopped.
	if n := e.scored.Load(); n < batches || n > batches+2 {
		t.Fatalf("%d batches scored for a plan of %d", n, batches)
	}
	if len(j.Score.Accepted) != int(batches) || j.Score.AcceptedRows != rows {
		t.Fatalf("score %+v", j.Score)
	}
	t.Logf("scored %d batches for %d, retried %d, duplicates %d", e.scored.Load(), batches, j.Score.Retried, j.Score.Duplicates)
}

// TestTrainThenScore: a training job whose config has scoring data scores
// it with the final adapter on the same workers, then completes.
func TestTrainThenScore(t *testing.T) {
	e := newScoreEnv(t)
	data := writeRows(t, 10)
	e.startScorer("a", 0)
	id := e.submit(e.yaml(1, fmt.Sprintf("scoring:\n  data: %s\n  batch_size: 3\n", data)))
	j := e.waitStatus(id, proto.StatusCompleted, 60*time.Second)
	if j.Score == nil || !j.Score.Done || j.Step != totalSteps || j.Adapter == "" {
		t.Fatalf("job %+v", j)
	}
	e.mu.Lock()
	got := e.adapter["a"]
	e.mu.Unlock()
	if got != j.Adapter {
		t.Fatalf("scored with adapter %q, the job's final adapter is %q", got, j.Adapter)
	}
	checkPredictions(t, coordinator.ScoreDir(e.out), 10)
}
