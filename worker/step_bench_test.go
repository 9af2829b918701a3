package worker

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/herdml/herd/collective"
	"github.com/herdml/herd/configs"
	"github.com/herdml/herd/dataset"
	"github.com/herdml/herd/internal/natsutil"
	"github.com/herdml/herd/internal/proto"
	"github.com/herdml/herd/telemetry"
)

// benchParams is the stand-in engine's gradient size: 1 MiB of float32,
// the order of a small model's LoRA adapter.
const benchParams = 1 << 18

// benchEngine stands in for the torch engine with a fixed amount of work
// per micro-batch (a pass over the gradient), so that the benchmark times
// the worker's step loop and its all-reduce, not libtorch.
type benchEngine struct {
	grad []float32
	step int
}

func (e *benchEngine) MicroBatch(b Batch) (MicroResult, error) {
	for i := range e.grad {
		e.grad[i] += float32(b.IDs[0]&7) * 0.5
	}
	return MicroResult{LossSum: float64(b.B), Tokens: b.B * b.S}, nil
}
func (e *benchEngine) Gradients() ([]float32, error) { return e.grad, nil }
func (e *benchEngine) Apply([]float32, int) (StepResult, error) {
	clear(e.grad)
	e.step++
	return StepResult{Step: e.step, LR: 1e-3}, nil
}
func (e *benchEngine) Step() int                          { return e.step }
func (e *benchEngine) DiscardGradients() error            { clear(e.grad); return nil }
func (e *benchEngine) StateLen() int                      { return 0 }
func (e *benchEngine) State() ([]float32, error)          { return nil, nil }
func (e *benchEngine) SetState([]float32, int) error      { return nil }
func (e *benchEngine) Save(string, json.RawMessage) error { return nil }
func (e *benchEngine) Restore(string) (int, error)        { return 0, nil }
func (e *benchEngine) Close()                             {}

type benchData struct{}

func (benchData) Len() int { return 1 << 20 }
func (benchData) Batch(idx []int) (ids, labels []int64, rows, seqLen int) {
	const s = 64
	ids = make([]int64, len(idx)*s)
	for r, i := range idx {
		ids[r*s] = int64(i)
	}
	return ids, ids, len(idx), s
}

// BenchmarkStepTracingOverhead runs the worker's real step (data, two
// micro-batches per rank, a 1 MiB all-reduce between two members over an
// embedded nats-server, the optimizer, the metrics) with tracing off (no
// Telemetry) and on (every span sampled and written to a trace file),
// alternating step by step so that both see the same machine load. It
// reports the traced/untraced ratio of the mean step time and the added
// microseconds per step.
func BenchmarkStepTracingOverhead(b *testing.B) {
	ns, url, err := natsutil.StartEmbedded(natsutil.EmbeddedOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Shutdown()
	const world = 2
	var ts []collective.Transport
	for range world {
		nc, err := nats.Connect(url, nats.NoEcho())
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		ts = append(ts, collective.NewNATSTransport(nc))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ms, err := collective.JoinAll(ctx, ts, "bench", 1, collective.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		for _, m := range ms {
			_ = m.Close()
		}
	}()
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "herd-worker", TraceFile: filepath.Join(b.TempDir(), "spans.jsonl"), SampleRatio: 1}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer tel.Shutdown(context.Background())

	cfg := &configs.Config{}
	cfg.Training.MicroBatchSize = 4
	cfg.Training.LogEvery = 1 << 30 // no step report: there is no coordinator
	const global = 16               // two micro-batches per rank
	newJobs := func(t *telemetry.Telemetry) []*job {
		var js []*job
		for range world {
			w := &Worker{cfg: Config{ID: "bench", Telemetry: t}, log: slog.New(slog.DiscardHandler)}
			js = append(js, &job{w: w, id: "job-1", cfg: cfg, eng: &benchEngine{grad: make([]float32, benchParams)}, data: benchData{},
				plan: dataset.Plan{N: benchData{}.Len(), G: global, Seed: 1}, total: 1 << 30})
		}
		return js
	}
	// A sampled group epoch span from the coordinator is the parent, as in
	// a traced job.
	parent := telemetry.WithTraceParent(ctx, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	step := func(js []*job) time.Duration {
		start := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, world)
		for r, j := range js {
			a := &proto.Assignment{Job: "job-1", Epoch: 1, Rank: r, World: world}
			// No metrics recorder: the benchmark isolates tracing.
			wg.Go(func() { errs[r] = j.step(parent, ms[r], a, telemetry.TrainRecorder{}) })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start)
	}
	off, on := newJobs(nil), newJobs(tel)
	var (
		tOff, tOn time.Duration
		n         int
	)
	for b.Loop() {
		tOff += step(off)
		tOn += step(on)
		n++
	}
	b.ReportMetric(float64(tOn)/float64(tOff), "traced/untraced")
	b.ReportMetric(float64(tOn-tOff)/float64(n)/1e3, "µs-added/step")
	b.ReportMetric(float64(tOff)/float64(n)/1e3, "µs/step-untraced")
}
