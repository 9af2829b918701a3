package scoring

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// job is a generate job of n rows: its predictions (what a deterministic
// worker returns for each row), its plan and its single-worker output.
type job struct {
	preds []Prediction
	plan  []Batch
	spec  Spec
}

func newJob(t *testing.T, seed int64, n, batchSize int) *job {
	rng := rand.New(rand.NewSource(seed))
	preds := randomGenerate(rng, n)
	lengths := make([]int, n)
	for i := range preds {
		if i%3 != 0 {
			preds[i].ID = fmt.Sprintf("row-%d", i)
		}
		lengths[i] = len(preds[i].Output)
	}
	return &job{
		preds: preds,
		plan:  Plan(lengths, batchSize, 0),
		spec:  Spec{Task: TaskGenerate, Metrics: []string{"loss", "perplexity", "exact_match", "f1", "rouge_l", "bleu"}, OnRowError: "record"},
	}
}

// batch is batch id's result, a fresh copy in a shuffled row order.
func (j *job) batch(rng *rand.Rand, id int) []Prediction {
	var out []Prediction
	for _, r := range j.plan[id].Rows {
		p := j.preds[r]
		p.Refs = append([]string(nil), p.Refs...)
		out = append(out, p)
	}
	rng.Shuffle(len(out), func(a, b int) { out[a], out[b] = out[b], out[a] })
	return out
}

// reference is the single-worker, in-order output: predictions.jsonl by
// direct marshalling and the metrics of one sequential pass.
func (j *job) reference(t *testing.T) ([]byte, Result) {
	var buf bytes.Buffer
	acc := NewAccumulator(j.spec.Task, j.spec.Metrics)
	for i := range j.preds {
		p := j.preds[i]
		line, err := MarshalRow(j.spec.Task, &p)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(line)
		buf.WriteByte('\n')
		acc.Add(&p)
	}
	return buf.Bytes(), acc.Result()
}

func readOutputs(t *testing.T, dir string) ([]byte, map[string]any) {
	t.Helper()
	preds, err := os.ReadFile(filepath.Join(dir, PredictionsFile))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return preds, m
}

func TestMergerExactlyOnceAnyOrder(t *testing.T) {
	j := newJob(t, 5, 3000, 8)
	wantPreds, wantRes := j.reference(t)
	dir := t.TempDir()
	m, err := NewMerger(MergerOptions{Dir: dir, Plan: j.plan, Spec: j.spec, MemRows: 200})
	if err != nil {
		t.Fatal(err)
	}
	// Every batch once, a third of them twice (a re-issued batch whose first
	// worker was only slow), from 4 concurrent "workers", in random order.
	rng := rand.New(rand.NewSource(6))
	var deliveries []int
	for id := range j.plan {
		deliveries = append(deliveries, id)
		if rng.Intn(3) == 0 {
			deliveries = append(deliveries, id)
		}
	}
	rng.Shuffle(len(deliveries), func(a, b int) { deliveries[a], deliveries[b] = deliveries[b], deliveries[a] })
	results := make([][]Prediction, len(deliveries))
	for k, id := range deliveries {
		results[k] = j.batch(rng, id)
	}
	var accepted, dropped int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := w; k < len(deliveries); k += 4 {
				ok, err := m.Accept(deliveries[k], results[k])
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if ok {
					accepted++
				} else {
					dropped++
				}
				mu.Unlock()
				if k == len(deliveries)/2 {
					// Partial metrics while the job runs.
					if r := m.Result(); r.Counts.Rows == 0 || r.Metrics[MetricBLEU] <= 0 {
						t.Errorf("partial result %+v", r)
					}
				}
			}
		}()
	}
	wg.Wait()
	if accepted != int64(len(j.plan)) || dropped != int64(len(deliveries)-len(j.plan)) {
		t.Fatalf("accepted %d dropped %d of %d deliveries, %d batches", accepted, dropped, len(deliveries), len(j.plan))
	}
	if len(m.Pending()) != 0 {
		t.Fatal("pending batches left")
	}
	res, err := m.Finish()
	if err != nil {
		t.Fatal(err)
	}
	gotPreds, metrics := readOutputs(t, dir)
	if !bytes.Equal(gotPreds, wantPreds) {
		t.Fatal("predictions.jsonl differs from the single-worker run")
	}
	if !reflect.DeepEqual(res.Metrics, wantRes.Metrics) {
		t.Fatalf("metrics %v\nwant %v", res.Metrics, wantRes.Metrics)
	}
	counts := metrics["counts"].(map[string]any)
	if counts["rows"].(float64) != 3000 || counts["batches"].(float64) != float64(len(j.plan)) ||
		counts["duplicates_dropped"].(float64) != float64(dropped) || counts["rows_with_errors"].(float64) != float64(wantRes.Counts.RowsWithErrors) {
		t.Fatalf("counts %v", counts)
	}
	if metrics["task"] != "generate" || metrics["config"].(map[string]any)["on_row_error"] != "record" {
		t.Fatalf("metrics.json %v", metrics)
	}
	if _, err := os.Stat(filepath.Join(dir, ".scoring-spool")); !os.IsNotExist(err) {
		t.Fatal("spool left behind")
	}
	if _, err := m.Accept(0, nil); !errors.Is(err, ErrFinished) {
		t.Fatalf("accept after finish: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(string(gotPreds), "\n"), "\n")
	if !strings.HasPrefix(lines[0], `{"id":0,`) {
		t.Fatalf("first line %s", lines[0])
	}
	if !strings.HasPrefix(lines[1], `{"id":"row-1",`) {
		t.Fatalf("second line %s", lines[1])
	}
}

func TestMergerRefusesBadResults(t *testing.T) {
	j := newJob(t, 7, 40, 4)
	m, err := NewMerger(MergerOptions{Dir: t.TempDir(), Plan: j.plan, Spec: j.spec})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(1))
	good := j.batch(rng, 0)
	if _, err := m.Accept(len(j.plan), good); !errors.Is(err, ErrUnknownBatch) {
		t.Errorf("unknown batch: %v", err)
	}
	if _, err := m.Accept(0, good[1:]); !errors.Is(err, ErrBatchMismatch) {
		t.Errorf("missing row: %v", err)
	}
	dup := append([]Prediction(nil), good...)
	dup[0] = dup[1]
	if _, err := m.Accept(0, dup); !errors.Is(err, ErrBatchMismatch) {
		t.Errorf("repeated row: %v", err)
	}
	other := append([]Prediction(nil), good...)
	other[0] = j.batch(rng, 1)[0]
	if _, err := m.Accept(0, other); !errors.Is(err, ErrBatchMismatch) {
		t.Errorf("row of another batch: %v", err)
	}
	if m.Accepted(0) {
		t.Fatal("a refused result was accepted")
	}
	if ok, err := m.Accept(0, good); !ok || err != nil {
		t.Fatalf("good result: %v %v", ok, err)
	}
	if _, err := m.Finish(); !errors.Is(err, ErrIncomplete) {
		t.Errorf("finish with missing batches: %v", err)
	}
	if got := m.Pending(); len(got) != len(j.plan)-1 || got[0] != 1 {
		t.Errorf("pending %v", got)
	}

	// on_row_error: fail refuses a batch with a failed row.
	spec := j.spec
	spec.OnRowError = "fail"
	m2, err := NewMerger(MergerOptions{Dir: t.TempDir(), Plan: j.plan, Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	bad := j.batch(rng, 2)
	bad[0].Error = "empty row"
	if _, err := m2.Accept(2, bad); !errors.Is(err, ErrRowFailed) {
		t.Errorf("failed row with on_row_error fail: %v", err)
	}

	// A plan that does not partition the rows.
	if _, err := NewMerger(MergerOptions{Dir: t.TempDir(), Plan: []Batch{{ID: 0, Rows: []int{0, 0}}}, Spec: j.spec}); !errors.Is(err, ErrBadPlan) {
		t.Errorf("bad plan: %v", err)
	}
}

func TestMergerResumeAfterCrash(t *testing.T) {
	j := newJob(t, 8, 1000, 5)
	wantPreds, wantRes := j.reference(t)
	dir := t.TempDir()
	rng := rand.New(rand.NewSource(2))
	order := rng.Perm(len(j.plan))
	half := len(order) / 2

	m, err := NewMerger(MergerOptions{Dir: dir, Plan: j.plan, Spec: j.spec, MemRows: 150})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range order[:half] {
		if _, err := m.Accept(id, j.batch(rng, id)); err != nil {
			t.Fatal(err)
		}
	}
	m.Accept(order[0], j.batch(rng, order[0])) // a duplicate, counted once flushed
	if err := m.Flush(); err != nil {
		t.Fatal(err)
	}
	// Accepted after the last flush: lost with the "crashed" process.
	lost := order[half : half+7]
	for _, id := range lost {
		if _, err := m.Accept(id, j.batch(rng, id)); err != nil {
			t.Fatal(err)
		}
	}

	m2, err := NewMerger(MergerOptions{Dir: dir, Plan: j.plan, Spec: j.spec, MemRows: 150})
	if err != nil {
		t.Fatal(err)
	}
	pending := m2.Pending()
	if len(pending) != len(order)-half {
		t.Fatalf("%d pending after recovery, want %d", len(pending), len(order)-half)
	}
	for _, id := range order[:half] {
		if !m2.Accepted(id) {
			t.Fatalf("flushed batch %d not recovered", id)
		}
	}
	if r := m2.Result(); r.Counts.DuplicatesDropped != 1 || r.Counts.Batches != int64(half) {
		t.Fatalf("recovered counts %+v", r.Counts)
	}
	for _, id := range pending {
		if _, err := m2.Accept(id, j.batch(rng, id)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := m2.Finish()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := readOutputs(t, dir)
	if !bytes.Equal(got, wantPreds) {
		t.Fatal("predictions after recovery differ from the single-worker run")
	}
	if !reflect.DeepEqual(res.Metrics, wantRes.Metrics) {
		t.Fatalf("metrics after recovery %v, want %v", res.Metrics, wantRes.Metrics)
	}

	// A spool of another plan is not taken up.
	spool := filepath.Join(t.TempDir(), "spool")
	m3, _ := NewMerger(MergerOptions{Dir: t.TempDir(), SpoolDir: spool, Plan: j.plan, Spec: j.spec})
	m3.Accept(0, j.batch(rng, 0))
	m3.Flush()
	if _, err := NewMerger(MergerOptions{Dir: t.TempDir(), SpoolDir: spool, Plan: Plan(make([]int, 1000), 5, 0), Spec: j.spec}); !errors.Is(err, ErrSpoolMismatch) {
		t.Fatalf("foreign spool: %v", err)
	}
}

func TestMergerManySpoolFiles(t *testing.T) {
	// One row per spill: more spool files than the merge fan-in, so Finish
	// compacts; then a crash after a compaction is recovered.
	j := newJob(t, 9, 3*mergeFanIn+10, 1)
	wantPreds, wantRes := j.reference(t)
	dir := t.TempDir()
	m, err := NewMerger(MergerOptions{Dir: dir, Plan: j.plan, Spec: j.spec, MemRows: 1})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(3))
	for _, id := range rng.Perm(len(j.plan)) {
		if _, err := m.Accept(id, j.batch(rng, id)); err != nil {
			t.Fatal(err)
		}
	}
	m.mu.Lock()
	if err := m.compact(); err != nil {
		t.Fatal(err)
	}
	m.mu.Unlock()
	// Recovery sees the compacted file and the rest.
	m2, err := NewMerger(MergerOptions{Dir: dir, Plan: j.plan, Spec: j.spec, MemRows: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(m2.Pending()) != 0 {
		t.Fatalf("%d pending after recovery", len(m2.Pending()))
	}
	res, err := m2.Finish()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := readOutputs(t, dir)
	if !bytes.Equal(got, wantPreds) || !reflect.DeepEqual(res.Metrics, wantRes.Metrics) {
		t.Fatal("output after compaction differs from the single-worker run")
	}
}

func TestMergerCompactionCrash(t *testing.T) {
	// The compacted file is written but the crash comes before the originals
	// are removed: recovery must not count their batches twice.
	j := newJob(t, 10, mergeFanIn+5, 1)
	wantPreds, _ := j.reference(t)
	dir := t.TempDir()
	m, _ := NewMerger(MergerOptions{Dir: dir, Plan: j.plan, Spec: j.spec, MemRows: 1})
	rng := rand.New(rand.NewSource(4))
	for id := range j.plan {
		m.Accept(id, j.batch(rng, id))
	}
	spool := filepath.Join(dir, ".scoring-spool")
	saved := map[string][]byte{}
	for _, p := range m.runs[:mergeFanIn] {
		b, _ := os.ReadFile(p)
		saved[p] = b
	}
	m.mu.Lock()
	if err := m.compact(); err != nil {
		t.Fatal(err)
	}
	m.mu.Unlock()
	for p, b := range saved { // undo the removals
		os.WriteFile(p, b, 0o644)
	}
	m2, err := NewMerger(MergerOptions{Dir: dir, SpoolDir: spool, Plan: j.plan, Spec: j.spec})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m2.Finish(); err != nil {
		t.Fatal(err)
	}
	got, _ := readOutputs(t, dir)
	if !bytes.Equal(got, wantPreds) {
		t.Fatal("output after a crash in compaction differs")
	}
}

func TestMergerEmptyJob(t *testing.T) {
	dir := t.TempDir()
	m, err := NewMerger(MergerOptions{Dir: filepath.Join(dir, "out"), Plan: Plan(nil, 8, 0), Spec: Spec{Task: TaskLoss}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := m.Finish()
	if err != nil || res.Counts.Rows != 0 || len(res.Metrics) != 0 {
		t.Fatalf("empty job: %+v %v", res, err)
	}
	preds, metrics := readOutputs(t, filepath.Join(dir, "out"))
	if len(preds) != 0 || len(metrics["metrics"].(map[string]any)) != 0 {
		t.Fatalf("empty job wrote %q %v", preds, metrics)
	}
}
