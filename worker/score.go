package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/herdml/herd/configs"
	"github.com/herdml/herd/internal/proto"
	"github.com/herdml/herd/scoring"
	"github.com/herdml/herd/telemetry"
)

// Scorer scores rows of one data set with one model (and adapter): what a
// worker runs for a job's scoring phase. worker/torchengine implements it
// with internal/scorerun; unit tests use a fake.
type Scorer interface {
	// Rows is the number of rows prepared from the data file; it must be
	// the number of rows the plan covers.
	Rows() int
	// Score scores the given rows (indexes into the data file, one planned
	// batch) and returns one prediction per row.
	Score(rows []int) ([]scoring.Prediction, error)
	// Close frees the model.
	Close()
}

// ScorerSpec is what a ScorerFactory needs: the job's config, the resolved
// model directory, the adapter ("" for the base model), the data file and
// the device.
type ScorerSpec struct {
	Config   *configs.Config
	ModelDir string
	Adapter  string
	Data     string
	Device   string
}

// ScorerFactory loads a model for scoring and prepares (tokenizes) the rows
// of the data file.
type ScorerFactory func(ctx context.Context, spec ScorerSpec) (Scorer, error)

// scoreWindow is the batches a worker holds leased at once: one being
// scored, one waiting, so that it never idles on a lease round trip.
const scoreWindow = 2

// scoreCallTimeout bounds one lease or result request (Call retries inside
// it during a leader election).
const scoreCallTimeout = 30 * time.Second

// errScoreDone ends the lease loop: the plan is complete.
var errScoreDone = errors.New("worker: scoring done")

// runScore scores batches of job a.Job for as long as it is in its scoring
// phase and this worker is assigned to it.
func (w *Worker) runScore(ctx context.Context, a *proto.Assignment) {
	log := w.log.With("job", a.Job)
	w.setStatus(a.Job, a.Epoch, proto.WorkerLoading, 0, "")
	fail := func(err error) {
		if ctx.Err() != nil {
			return
		}
		log.Error("cannot score", "err", err)
		w.setStatus(a.Job, a.Epoch, proto.WorkerFailed, 0, err.Error())
		w.report(ctx, proto.SubjectFailure, proto.FailureReport{WorkerID: w.cfg.ID, Job: a.Job, Epoch: a.Epoch, Error: err.Error(), Fatal: true})
		w.waitJobGone(ctx, a.Job)
	}
	sa := a.Score
	cfg, err := configs.Parse([]byte(a.ConfigYAML), "job.yaml", nil)
	if err != nil {
		fail(fmt.Errorf("config: %w", err))
		return
	}
	plan, fp, err := scoring.PlanFile(sa.Data, sa.Task, sa.BatchSize)
	if err != nil {
		fail(fmt.Errorf("plan: %w", err))
		return
	}
	if fp != sa.Fingerprint {
		fail(fmt.Errorf("plan of %s: fingerprint %s, the coordinator's is %s (does this worker see the same data file?)", sa.Data, fp, sa.Fingerprint))
		return
	}
	if w.cfg.NewScorer == nil {
		fail(errors.New("this worker cannot score (no scorer configured)"))
		return
	}
	modelDir, err := w.cfg.ResolveModel(cfg.Model.Path, cfg.Model.Revision)
	if err != nil {
		fail(fmt.Errorf("model: %w", err))
		return
	}
	sc, err := w.cfg.NewScorer(ctx, ScorerSpec{Config: cfg, ModelDir: modelDir, Adapter: sa.Adapter, Data: sa.Data, Device: w.cfg.Device})
	if err != nil {
		fail(fmt.Errorf("scorer: %w", err))
		return
	}
	defer sc.Close()
	if sc.Rows() != sa.Rows {
		fail(fmt.Errorf("data: %d rows prepared from %s, the plan has %d (did the file change since it was planned?)", sc.Rows(), sa.Data, sa.Rows))
		return
	}
	w.setInterval(cfg.Cluster.Heartbeat)
	defer w.setInterval(0)
	w.setStatus(a.Job, a.Epoch, proto.WorkerScoring, 0, "")
	log.Info("scoring", "rows", sa.Rows, "batches", sa.Batches)
	n, err := w.scoreLoop(ctx, a, plan, sc)
	switch {
	case errors.Is(err, errScoreDone):
		log.Info("scoring done", "batches_scored", n)
		w.setStatus(a.Job, a.Epoch, proto.WorkerFinished, 0, "")
		w.waitJobGone(ctx, a.Job)
	case ctx.Err() != nil:
	case err != nil:
		fail(err)
	default:
		log.Info("leaving the scoring job", "batches_scored", n)
		w.setStatus("", 0, proto.WorkerIdle, 0, "")
	}
}

type scoredBatch struct {
	id    int
	preds []scoring.Prediction
}

// scoreLoop leases batches (up to scoreWindow at once), scores them and
// sends the results, until the plan is complete (errScoreDone), the
// assignment changes (nil) or it fails. Three goroutines, all ended and
// waited for on return: the leaser, this one (scoring, on the caller's
// goroutine, where the engine lives), and the sender.
func (w *Worker) scoreLoop(ctx context.Context, a *proto.Assignment, plan []scoring.Batch, sc Scorer) (int, error) {
	// Batch spans join the job's trace under the group epoch that assigned
	// the scoring work.
	ctx = w.epochContext(ctx, a)
	tel := w.cfg.Telemetry
	rec := tel.Metrics().Score(a.Job, telemetry.AttrWorker.String(w.cfg.ID))
	ctx, cancel := context.WithCancelCause(ctx)
	slots := make(chan struct{}, scoreWindow)
	work := make(chan int, scoreWindow)
	results := make(chan scoredBatch, 1)
	leaseErr := make(chan error, 1)
	var wg sync.WaitGroup
	closed := false
	closeResults := func() {
		if !closed {
			closed = true
			close(results)
		}
	}
	defer func() {
		cancel(nil)
		closeResults()
		wg.Wait()
	}()
	// handoff carries the batch leased in a result's ack from the sender to
	// the leaser, which alone writes (and closes) work; the batch inherits
	// the slot of the batch whose result was acked.
	handoff := make(chan int)
	leaserDone := make(chan struct{})
	wg.Go(func() {
		defer close(leaserDone)
		defer close(work)
		leaseErr <- w.leaseLoop(ctx, a, slots, handoff, work)
	})
	wg.Go(func() {
		for r := range results {
			next, err := w.sendResult(ctx, a.Job, r)
			if err != nil {
				cancel(err)
				for range results { // drain so that the scorer never blocks
				}
				return
			}
			if next < 0 {
				<-slots
				continue
			}
			select {
			case handoff <- next:
			case <-leaserDone:
			case <-ctx.Done():
			}
		}
	})
	scored := 0
	check := time.NewTicker(time.Second)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return scored, context.Cause(ctx)
		case <-check.C:
			if cur, _ := w.current(); cur == nil || cur.Job != a.Job || cur.Score == nil {
				return scored, nil
			}
		case b, ok := <-work:
			if !ok {
				// The leaser stopped: deliver what was scored, then say why.
				closeResults()
				wg.Wait()
				if err := context.Cause(ctx); err != nil {
					return scored, err
				}
				return scored, <-leaseErr
			}
			if b < 0 || b >= len(plan) {
				return scored, fmt.Errorf("leased batch %d of %d", b, len(plan))
			}
			if d := w.cfg.StepDelay; d > 0 && !sleepCtx(ctx, d) {
				return scored, context.Cause(ctx)
			}
			_, sp := tel.Start(ctx, telemetry.SpanScoreBatch, trace.WithAttributes(telemetry.AttrJob.String(a.Job),
				telemetry.AttrBatch.Int(b), telemetry.AttrRows.Int(len(plan[b].Rows))))
			start := time.Now()
			preds, err := sc.Score(plan[b].Rows)
			telemetry.End(sp, err)
			if err != nil {
				return scored, fmt.Errorf("score batch %d: %w", b, err)
			}
			rec.BatchDone(ctx, len(plan[b].Rows), time.Since(start).Seconds())
			scored++
			select {
			case results <- scoredBatch{b, preds}:
			case <-ctx.Done():
				return scored, context.Cause(ctx)
			}
		}
	}
}

// leaseLoop takes a slot, leases one batch for it and queues it, until the
// leader says the plan is done (errScoreDone), ctx ends (nil) or the
// leader refuses this worker (an error).
func (w *Worker) leaseLoop(ctx context.Context, a *proto.Assignment, slots chan struct{}, handoff <-chan int, work chan<- int) error {
	for {
		select {
		case slots <- struct{}{}:
		case b := <-handoff:
			select {
			case work <- b:
			case <-ctx.Done():
				return nil
			}
			continue
		case <-ctx.Done():
			return nil
		}
		for {
			cctx, cancel := context.WithTimeout(ctx, scoreCallTimeout)
			var res proto.LeaseResult
			err := proto.Call(cctx, w.nc, proto.SubjectScoreLease, w.cfg.Token,
				proto.LeaseRequest{WorkerID: w.cfg.ID, Job: a.Job, Fingerprint: a.Score.Fingerprint, Want: 1}, &res)
			cancel()
			switch {
			case ctx.Err() != nil:
				return nil
			case proto.IsCode(err, proto.CodeInvalid), proto.IsCode(err, proto.CodeNotFound):
				return fmt.Errorf("lease: %w", err)
			case err != nil:
				w.log.Warn("lease", "err", err)
				if !sleepCtx(ctx, time.Second) {
					return nil
				}
				continue
			case res.Done:
				return errScoreDone
			}
			if len(res.Batches) == 0 {
				if !sleepCtx(ctx, time.Duration(max(res.RetryMs, 50))*time.Millisecond) {
					return nil
				}
				continue
			}
			for i, b := range res.Batches {
				if i > 0 {
					// More than asked for: take a slot for each.
					select {
					case slots <- struct{}{}:
					case <-ctx.Done():
						return nil
					}
				}
				select {
				case work <- b:
				case <-ctx.Done():
					return nil
				}
			}
			break
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// sendResult sends a batch's predictions, split into chunks under the
// connection's max_payload, each acknowledged by the leader, and returns the
// next batch leased in the last ack (-1 if none).
func (w *Worker) sendResult(ctx context.Context, job string, r scoredBatch) (int, error) {
	limit := int(w.nc.MaxPayload()) - 4096 // room for the envelope and headers
	parts := 1
	var chunks []json.RawMessage
	for {
		chunks = chunks[:0]
		per := (len(r.preds) + parts - 1) / parts
		fits := true
		for i := 0; i < len(r.preds) || i == 0; i += max(per, 1) {
			end := min(i+per, len(r.preds))
			data, err := json.Marshal(r.preds[i:end])
			if err != nil {
				return -1, fmt.Errorf("batch %d: encode: %w", r.id, err)
			}
			if len(data) > limit && end-i > 1 {
				fits = false
				break
			}
			chunks = append(chunks, data)
			if end == len(r.preds) {
				break
			}
		}
		if fits {
			break
		}
		parts *= 2
	}
	for i := 0; i < len(chunks); {
		c := proto.ResultChunk{WorkerID: w.cfg.ID, Job: job, Batch: r.id, Part: i, Parts: len(chunks), Preds: chunks[i]}
		if i == len(chunks)-1 {
			c.Want = 1
		}
		var ack proto.LeaseResult
		cctx, cancel := context.WithTimeout(ctx, scoreCallTimeout)
		err := proto.Call(cctx, w.nc, proto.SubjectScoreResult, w.cfg.Token, c, &ack)
		cancel()
		switch {
		case err == nil && i == len(chunks)-1 && len(ack.Batches) > 0:
			if len(ack.Batches) > 1 {
				// Asked for one: the rest will expire and go to others.
				w.log.Warn("more batches than asked for in an ack", "batches", ack.Batches)
			}
			return ack.Batches[0], nil
		case err == nil:
			i++
		case ctx.Err() != nil:
			return -1, nil
		case proto.IsCode(err, proto.CodeInvalid), proto.IsCode(err, proto.CodeNotFound):
			return -1, fmt.Errorf("result of batch %d refused: %w", r.id, err)
		default:
			// No leader (an election) or a lost reply: send the chunk
			// again; the leader keeps the last copy of each chunk and
			// accepts the batch once.
			w.log.Warn("send result", "batch", r.id, "part", i, "err", err)
			if !sleepCtx(ctx, time.Second) {
				return -1, nil
			}
		}
	}
	return -1, nil
}
