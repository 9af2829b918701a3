package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"

	"github.com/herdml/herd/collective"
	"github.com/herdml/herd/configs"
	"github.com/herdml/herd/dataset"
	"github.com/herdml/herd/internal/proto"
	"github.com/herdml/herd/telemetry"
)

// Outcomes of an epoch that are not failures.
var (
	errSuperseded = errors.New("worker: group epoch superseded")
	errFinished   = errors.New("worker: job finished")
	errPaused     = errors.New("worker: paused")
	errConnLost   = errors.New("worker: the collective's NATS connection dropped")
)

// culpritError marks a failure of this worker itself (its engine), as
// opposed to one it observed in a peer.
type culpritError struct{ err error }

func (e culpritError) Error() string { return e.err.Error() }
func (e culpritError) Unwrap() error { return e.err }

// job is a job's loaded model and data on this worker.
type job struct {
	w      *Worker
	id     string
	cfg    *configs.Config
	eng    Engine
	data   Data
	eval   Data                    // the evaluation set, nil without training.eval_every
	mf     *telemetry.MetricsFiles // opened by rank 0 at its first step
	plan   dataset.Plan
	total  int
	grad   []float32 // gradient + [tokens, loss sum]
	loss   float64   // mean token loss of the last step
	tr     collective.Transport
	collCf collective.Config
}

// runJob trains job a.Job for as long as this worker is assigned to it.
func (w *Worker) runJob(ctx context.Context, a *proto.Assignment) {
	log := w.log.With("job", a.Job)
	w.setStatus(a.Job, a.Epoch, proto.WorkerLoading, 0, "")
	j, err := w.load(ctx, a)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		log.Error("cannot load the job", "err", err)
		w.setStatus(a.Job, a.Epoch, proto.WorkerFailed, 0, err.Error())
		w.report(ctx, proto.SubjectFailure, proto.FailureReport{WorkerID: w.cfg.ID, Job: a.Job, Epoch: a.Epoch, Error: err.Error(), Fatal: true})
		w.waitJobGone(ctx, a.Job)
		return
	}
	defer j.eng.Close()
	defer func() {
		if j.mf != nil {
			_ = j.mf.Close()
		}
	}()
	w.setInterval(j.cfg.Cluster.Heartbeat)
	defer w.setInterval(0)
	log.Info("job loaded", "sequences", j.data.Len(), "global_batch", j.plan.G, "steps", j.total)
	var done uint64 // the last epoch run
	for ctx.Err() == nil {
		cur, status := w.current()
		if cur != nil && cur.Job == a.Job && cur.Score != nil {
			// Training is done and the job scores now: free the training
			// engine; Run starts the scoring loop.
			log.Info("training done; the job's scoring phase starts")
			return
		}
		if cur == nil || cur.Job != a.Job || cur.Status != proto.StatusRunning || w.paused.Load() {
			if (cur != nil && cur.Job != a.Job) || status == "" || !activeStatus(status) || w.paused.Load() {
				w.setStatus("", 0, proto.WorkerIdle, 0, "")
				log.Info("leaving the job", "status", status)
				return
			}
			w.wait(ctx, time.Second)
			continue
		}
		if cur.Epoch <= done {
			w.wait(ctx, time.Second)
			continue
		}
		err := j.runEpoch(ctx, cur)
		done = cur.Epoch
		switch {
		case errors.Is(err, errFinished):
			w.setStatus(a.Job, cur.Epoch, proto.WorkerFinished, j.eng.Step(), "")
		case errors.Is(err, errPaused):
			w.setStatus("", 0, proto.WorkerIdle, 0, "")
			return
		case errors.Is(err, errSuperseded), errors.Is(err, collective.ErrStaleEpoch):
			log.Info("group epoch superseded", "epoch", cur.Epoch)
		case ctx.Err() != nil:
			return
		default:
			err = describeCause(err)
			var ce culpritError
			culprit := errors.As(err, &ce)
			log.Warn("group epoch failed", "epoch", cur.Epoch, "err", err, "culprit", culprit)
			w.setStatus(a.Job, cur.Epoch, proto.WorkerFailed, j.eng.Step(), err.Error())
			w.report(ctx, proto.SubjectFailure, proto.FailureReport{WorkerID: w.cfg.ID, Job: a.Job, Epoch: cur.Epoch, Error: err.Error(), Culprit: culprit})
		}
	}
}

// describeCause names a lost connection in an error from a cancelled epoch.
func describeCause(err error) error {
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%w (%w)", err, errConnLost)
	}
	return err
}

func activeStatus(s string) bool {
	return s == proto.StatusQueued || s == proto.StatusRunning || s == proto.StatusWaiting
}

// waitJobGone blocks until the job is no longer this worker's.
func (w *Worker) waitJobGone(ctx context.Context, id string) {
	for ctx.Err() == nil {
		cur, status := w.current()
		if (cur == nil || cur.Job != id) && (status == "" || !activeStatus(status)) {
			break
		}
		if cur != nil && cur.Job != id {
			break
		}
		w.wait(ctx, time.Second)
	}
	w.setStatus("", 0, proto.WorkerIdle, 0, "")
}

// load parses the job's config and loads its data and model.
func (w *Worker) load(ctx context.Context, a *proto.Assignment) (*job, error) {
	cfg, err := configs.Parse([]byte(a.ConfigYAML), "job.yaml", nil)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	modelDir, err := w.cfg.ResolveModel(cfg.Model.Path, cfg.Model.Revision)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	data, closeData, err := w.cfg.LoadData(ctx, cfg, modelDir)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	if a.GlobalBatch < 1 {
		closeData()
		return nil, fmt.Errorf("global batch %d", a.GlobalBatch)
	}
	plan := dataset.Plan{N: data.Len(), G: a.GlobalBatch, Seed: uint64(cfg.Training.Seed)}
	total := cfg.Training.MaxSteps
	if total <= 0 {
		total = plan.TotalSteps(cfg.Training.Epochs)
	}
	if total <= 0 {
		closeData()
		return nil, fmt.Errorf("data: no training step: %d sequences", data.Len())
	}
	eng, err := w.cfg.NewEngine(ctx, EngineSpec{Config: cfg, ModelDir: modelDir, Device: w.cfg.Device, TotalSteps: total})
	if err != nil {
		closeData()
		return nil, fmt.Errorf("engine: %w", err)
	}
	cc := collective.DefaultConfig()
	cc.Timeout = cfg.Cluster.Timeout
	cc.Algorithm = collective.Algorithm(cfg.Cluster.AllReduce)
	cc.Compression = collective.Compression(cfg.Cluster.Compression)
	cc.Logger = w.log
	j := &job{w: w, id: a.Job, cfg: cfg, eng: &closingEngine{Engine: eng, close: closeData}, data: data, plan: plan, total: total,
		tr: collective.NewNATSTransport(w.cc), collCf: cc}
	if cfg.Training.EvalEvery > 0 {
		if ed, ok := data.(EvalData); ok {
			j.eval = ed.EvalSet()
		}
		if j.eval == nil {
			j.eng.Close()
			return nil, fmt.Errorf("data: training.eval_every is %d but there is no evaluation set (dataset.eval or dataset.eval_split)", cfg.Training.EvalEvery)
		}
	}
	return j, nil
}

// closingEngine also releases the data when the engine is closed.
type closingEngine struct {
	Engine
	close func() error
}

func (e *closingEngine) EvalLoss(b Batch) (MicroResult, error) { return evalLoss(e.Engine, b) }

func (e *closingEngine) Close() {
	e.Engine.Close()
	_ = e.close()
}

// runEpoch runs one group epoch: join, synchronise state, train until the
// end of the job or a failure.
func (j *job) runEpoch(ctx context.Context, a *proto.Assignment) error {
	w := j.w
	log := w.log.With("job", j.id, "epoch", a.Epoch, "rank", a.Rank, "world", a.World)
	ctx = w.epochContext(ctx, a)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	lost := w.connLost()
	go func() {
		select {
		case <-lost:
			cancel(errConnLost)
		case <-ctx.Done():
		}
	}()
	w.setStatus(j.id, a.Epoch, proto.WorkerSyncing, j.eng.Step(), "")
	if err := j.eng.DiscardGradients(); err != nil {
		return culpritError{err}
	}
	syncStart := time.Now()
	ct, closeCt := j.epochTransport()
	defer closeCt()
	m, err := j.join(ctx, a, ct)
	if err != nil {
		return err
	}
	defer m.Close()
	log.Info("group epoch started", "step", j.eng.Step(), "sync_ms", time.Since(syncStart).Milliseconds())
	// Rank is part of the series: the all-reduce timings of rank 0 and
	// the others differ with the algorithm.
	tr := w.cfg.Telemetry.Metrics().Train(j.id, telemetry.AttrWorker.String(w.cfg.ID), telemetry.AttrRank.Int(a.Rank))
	w.setStatus(j.id, a.Epoch, proto.WorkerTraining, j.eng.Step(), "")
	for j.eng.Step() < j.total {
		if cur, _ := w.current(); cur == nil || cur.Job != j.id || cur.Epoch != a.Epoch || cur.Status != proto.StatusRunning {
			return errSuperseded
		}
		if w.paused.Load() {
			if a.Rank == 0 {
				if _, err := j.checkpoint(ctx, a, true, tr); err != nil {
					log.Error("checkpoint on pause", "err", err)
				}
			}
			return errPaused
		}
		if err := j.step(ctx, m, a, tr); err != nil {
			return err
		}
		w.setStatus(j.id, a.Epoch, proto.WorkerTraining, j.eng.Step(), "")
	}
	if a.Rank == 0 {
		if err := j.finish(ctx, a, tr); err != nil {
			return err
		}
	}
	return errFinished
}

// join joins the group epoch and synchronises the state, under a
// state.sync span. The member is closed on error.
func (j *job) join(ctx context.Context, a *proto.Assignment, t collective.Transport) (_ *collective.Member, err error) {
	ctx, span := j.w.cfg.Telemetry.Start(ctx, telemetry.SpanStateSync, trace.WithAttributes(telemetry.AttrJob.String(j.id),
		telemetry.AttrEpoch.Int64(int64(a.Epoch)), telemetry.AttrRank.Int(a.Rank), telemetry.AttrWorld.Int(a.World)))
	defer func() { telemetry.End(span, err) }()
	m, err := collective.Join(ctx, t, a.Group(), a.Epoch, a.Rank, a.World, j.collCf)
	if err != nil {
		return nil, err
	}
	if err := j.sync(ctx, m, a); err != nil {
		_ = m.Close()
		return nil, err
	}
	span.SetAttributes(telemetry.AttrStep.Int(j.eng.Step()))
	return m, nil
}

// sync makes every member hold the same state: that of the member with the
// most steps, or the job's latest checkpoint when it is ahead of everyone
// (all members are new: the workers of the job were lost).
func (j *job) sync(ctx context.Context, m *collective.Member, a *proto.Assignment) error {
	steps := make([]float32, a.World)
	steps[a.Rank] = float32(j.eng.Step())
	if err := m.AllReduce(ctx, steps, collective.Sum); err != nil {
		return fmt.Errorf("exchange steps: %w", err)
	}
	best, src := -1, 0
	same := true
	for r, s := range steps {
		if int(s) > best {
			best, src = int(s), r
		}
		if int(s) != int(steps[0]) {
			same = false
		}
	}
	if cp := a.Checkpoint; cp != nil && cp.Step > best {
		dir := cp.Path
		if IsObjectRef(cp.Path) {
			tmp, err := os.MkdirTemp("", "herd-restore-")
			if err != nil {
				return culpritError{err}
			}
			defer os.RemoveAll(tmp)
			if err := DownloadCheckpoint(j.w.nc, cp.Path, tmp); err != nil {
				return culpritError{err}
			}
			dir = tmp
		}
		step, err := j.eng.Restore(dir)
		if err != nil {
			return culpritError{fmt.Errorf("restore checkpoint %s: %w", cp.Path, err)}
		}
		j.w.log.Info("restored checkpoint", "job", j.id, "step", step, "path", cp.Path)
		return nil
	}
	if same {
		return nil
	}
	buf := make([]float32, j.eng.StateLen())
	if a.Rank == src {
		st, err := j.eng.State()
		if err != nil {
			return culpritError{err}
		}
		copy(buf, st)
	}
	// A sum with zeros everywhere but at the source is a broadcast (x+0 is
	// x exactly), bounded by the collective's timeout like any call.
	if err := m.AllReduce(ctx, buf, collective.Sum); err != nil {
		return fmt.Errorf("state sync from rank %d: %w", src, err)
	}
	if a.Rank != src || j.eng.Step() != best {
		if err := j.eng.SetState(buf, best); err != nil {
			return culpritError{err}
		}
	}
	j.w.log.Info("state synchronised", "job", j.id, "from_rank", src, "step", best)
	return nil
}

// step takes one optimizer step: this rank's shard of the global batch in
// micro-batches, the all-reduce of the summed gradient with the token count
// and loss, and the optimizer step. Each part is a child span of the step's
// span; tr records the step's metrics.
func (j *job) step(ctx context.Context, m *collective.Member, a *proto.Assignment, tr telemetry.TrainRecorder) (err error) {
	w := j.w
	tel := w.cfg.Telemetry
	start := time.Now()
	if w.cfg.StepDelay > 0 {
		time.Sleep(w.cfg.StepDelay)
	}
	k := j.eng.Step()
	ctx, span := tel.Start(ctx, telemetry.SpanStep, trace.WithAttributes(telemetry.AttrJob.String(j.id),
		telemetry.AttrStep.Int(k+1), telemetry.AttrRank.Int(a.Rank), telemetry.AttrWorld.Int(a.World)))
	defer func() { telemetry.End(span, err) }()
	if w.cfg.FailAtStep == k+1 && w.failed.CompareAndSwap(false, true) {
		return culpritError{fmt.Errorf("engine: injected failure at step %d", k+1)}
	}
	_, sp := tel.Start(ctx, telemetry.SpanStepData)
	pos := j.plan.At(k)
	shard := j.plan.Shard(pos.Epoch, pos.Step, a.Rank, a.World)
	var batches []Batch
	for _, mb := range dataset.MicroBatches(shard, j.cfg.Training.MicroBatchSize) {
		ids, labels, rows, seqLen := j.data.Batch(mb)
		batches = append(batches, Batch{IDs: ids, Labels: labels, B: rows, S: seqLen})
	}
	sp.SetAttributes(telemetry.AttrMicro.Int(len(batches)), telemetry.AttrRows.Int(len(shard)))
	sp.End()
	lossSum, tokens, err := j.forwardBackward(ctx, batches)
	if err != nil {
		return culpritError{err}
	}
	g, err := j.eng.Gradients()
	if err != nil {
		return culpritError{err}
	}
	n := len(g)
	if len(j.grad) != n+2 {
		j.grad = make([]float32, n+2)
	}
	copy(j.grad, g)
	j.grad[n], j.grad[n+1] = float32(tokens), float32(lossSum)
	if w.cfg.KillAtStep == k+1 {
		w.log.Warn("injected fault: SIGKILL", "step", k+1)
		_ = syscall.Kill(syscall.Getpid(), syscall.SIGKILL)
	}
	arBytes := int64(4 * len(j.grad))
	arCtx, sp := tel.Start(ctx, telemetry.SpanStepAllReduce, trace.WithAttributes(telemetry.AttrBytes.Int64(arBytes)))
	arStart := time.Now()
	err = m.AllReduce(arCtx, j.grad, collective.Sum)
	arTime := time.Since(arStart)
	telemetry.End(sp, err)
	if err != nil {
		return err
	}
	total := int(j.grad[n])
	_, sp = tel.Start(ctx, telemetry.SpanStepOptimizer)
	st, err := j.eng.Apply(j.grad[:n], total)
	telemetry.End(sp, err)
	if err != nil {
		return culpritError{err}
	}
	j.loss = float64(j.grad[n+1]) / float64(max(total, 1))
	el := time.Since(start)
	var ev evalResult
	if every := j.cfg.Training.EvalEvery; every > 0 && (st.Step%every == 0 || st.Step == j.total) {
		if ev, err = j.evaluate(ctx, m, a); err != nil {
			return err
		}
	}
	stat := proto.StepStat{Step: st.Step, TotalSteps: j.total, Epoch: pos.Epoch, Loss: j.loss,
		Tokens: total, LR: st.LR, GradNorm: st.GradNorm, World: a.World,
		StepMs: float64(el.Microseconds()) / 1000, AllReduceMs: float64(arTime.Microseconds()) / 1000,
		TokensPerSec: float64(total) / el.Seconds(), At: time.Now(),
		EvalLoss: ev.loss, EvalTokens: ev.tokens, EvalMs: float64(ev.took.Microseconds()) / 1000}
	rec := telemetry.Step{Step: int64(st.Step), Loss: j.loss, LR: st.LR, GradNorm: st.GradNorm, Tokens: int64(total),
		TokensPerSec: stat.TokensPerSec, StepSeconds: el.Seconds(), ComputeSeconds: (el - arTime).Seconds(),
		AllReduceSeconds: arTime.Seconds(), AllReduceBytes: arBytes, Workers: a.World}
	if arTime > 0 {
		rec.BusBW = collective.BusBW(float64(arBytes)/arTime.Seconds(), a.World)
	}
	tr.Timing(ctx, rec)
	if a.Rank != 0 {
		return nil
	}
	// Loss, tokens and step counts are the group's, the same on every
	// member: rank 0 alone records them.
	tr.Progress(ctx, rec)
	evRec := telemetry.Eval{Step: int64(st.Step), Loss: ev.loss, Perplexity: math.Exp(ev.loss), Tokens: int64(ev.tokens), Seconds: ev.took.Seconds()}
	if ev.tokens > 0 {
		tr.Eval(ctx, evRec)
	}
	rec.TotalSteps, rec.GroupEpoch, rec.Time = int64(j.total), int64(a.Epoch), stat.At
	rec.Epoch = float64(pos.Epoch) + float64(pos.Step+1)/float64(max(j.plan.StepsPerEpoch(), 1))
	evRec.Epoch, evRec.Time = rec.Epoch, stat.At
	j.writeMetrics(rec, evRec)
	if w.cfg.Progress != nil {
		w.cfg.Progress(j.id, stat)
	}
	if every := j.cfg.Training.LogEvery; every <= 1 || st.Step%every == 0 || st.Step == j.total || ev.tokens > 0 {
		w.publish(proto.SubjectStep, proto.StepReport{WorkerID: w.cfg.ID, Job: j.id, Epoch: a.Epoch, Stat: stat})
	}
	if every := j.cfg.Training.CheckpointEvery; every > 0 && st.Step%every == 0 && st.Step < j.total {
		if _, err := j.checkpoint(ctx, a, false, tr); err != nil {
			w.log.Error("checkpoint", "step", st.Step, "err", err)
		}
	}
	return nil
}

// forwardBackward runs the micro-batches forward and backward, accumulating
// their gradients: one step.forward_backward span per micro-batch, or one
// for all of them when the engine spreads them over several devices at once.
func (j *job) forwardBackward(ctx context.Context, batches []Batch) (lossSum float64, tokens int, err error) {
	tel := j.w.cfg.Telemetry
	eng := j.eng
	if ce, ok := eng.(*closingEngine); ok {
		eng = ce.Engine
	}
	if be, ok := eng.(BatchEngine); ok && len(batches) > 0 {
		_, sp := tel.Start(ctx, telemetry.SpanStepForwardBackward, trace.WithAttributes(telemetry.AttrMicro.Int(len(batches))))
		r, err := be.MicroBatches(batches)
		telemetry.End(sp, err)
		return r.LossSum, r.Tokens, err
	}
	for _, b := range batches {
		_, sp := tel.Start(ctx, telemetry.SpanStepForwardBackward, trace.WithAttributes(telemetry.AttrMicro.Int(1), telemetry.AttrRows.Int(b.B)))
		r, err := eng.MicroBatch(b)
		telemetry.End(sp, err)
		if err != nil {
			return 0, 0, err
		}
		lossSum += r.LossSum
		tokens += r.Tokens
	}
	return lossSum, tokens, nil
}

// writeMetrics appends a step (and its evaluation, if any) to
// output_dir/metrics/{train,eval}.{jsonl,csv}, the files notebooks plot.
// Rank 0 writes them; after a re-formation the new rank 0 appends to the
// same files (output_dir is shared), and a step logged twice keeps its last
// row for readers (telemetry.MetricsFiles).
func (j *job) writeMetrics(s telemetry.Step, ev telemetry.Eval) {
	if j.mf == nil {
		mf, err := telemetry.NewMetricsFiles(filepath.Join(j.cfg.OutputDir, "metrics"))
		if err != nil {
			j.w.log.Warn("metrics files", "err", err)
			return
		}
		j.mf = mf
	}
	err := j.mf.Train(s)
	if ev.Tokens > 0 {
		err = errors.Join(err, j.mf.Eval(ev))
	}
	if err != nil {
		j.w.log.Warn("metrics files", "err", err)
	}
}

// evalResult is one evaluation of the whole eval set.
type evalResult struct {
	loss   float64 // token-weighted mean loss
	tokens int     // target tokens scored
	took   time.Duration
}

// evaluate computes the loss of the whole evaluation set with the current
// adapter: each rank scores its contiguous share in micro-batches, and the
// group all-reduces [loss sum, tokens]; the result is the same on every
// member and does not depend on the world size beyond fp32 summation order.
// It changes no training state, so a failure here fails the epoch like a
// failed step and the evaluation is skipped after the re-formation.
func (j *job) evaluate(ctx context.Context, m *collective.Member, a *proto.Assignment) (_ evalResult, err error) {
	ctx, span := j.w.cfg.Telemetry.Start(ctx, telemetry.SpanEval)
	defer func() { telemetry.End(span, err) }()
	start := time.Now()
	lo, hi := dataset.ShardBounds(j.eval.Len(), a.Rank, a.World)
	idx := make([]int, 0, hi-lo)
	for i := lo; i < hi; i++ {
		idx = append(idx, i)
	}
	var sum float64
	var tokens int
	for _, mb := range dataset.MicroBatches(idx, j.cfg.Training.MicroBatchSize) {
		ids, labels, rows, seqLen := j.eval.Batch(mb)
		r, err := evalLoss(j.eng, Batch{IDs: ids, Labels: labels, B: rows, S: seqLen})
		if err != nil {
			return evalResult{}, culpritError{fmt.Errorf("eval: %w", err)}
		}
		sum += r.LossSum
		tokens += r.Tokens
	}
	buf := []float32{float32(sum), float32(tokens)}
	if err := m.AllReduce(ctx, buf, collective.Sum); err != nil {
		return evalResult{}, fmt.Errorf("eval all-reduce: %w", err)
	}
	res := evalResult{tokens: int(buf[1]), took: time.Since(start)}
	if res.tokens > 0 {
		res.loss = float64(buf[0]) / float64(res.tokens)
	}
	j.w.log.Info("evaluated", "job", j.id, "step", j.eng.Step(), "eval_loss", res.loss, "eval_tokens", res.tokens, "ms", res.took.Milliseconds())
	return res, nil
}

// checkpointDir is where step's checkpoint goes.
func (j *job) checkpointDir(step int) string {
	return filepath.Join(j.cfg.OutputDir, "checkpoints", fmt.Sprintf("checkpoint-%d", step))
}

// checkpoint saves the current state, records it with the coordinator and
// returns where it is: a directory under output_dir, or an object store
// reference. Its span is the parent of the coordinator's
// checkpoint.commit, through the report's headers.
func (j *job) checkpoint(ctx context.Context, a *proto.Assignment, paused bool, tr telemetry.TrainRecorder) (_ string, err error) {
	step := j.eng.Step()
	ctx, span := j.w.cfg.Telemetry.Start(ctx, telemetry.SpanCheckpoint, trace.WithAttributes(telemetry.AttrJob.String(j.id),
		telemetry.AttrStep.Int(step)))
	defer func() { telemetry.End(span, err) }()
	start := time.Now()
	dir := j.checkpointDir(step)
	if j.w.cfg.CheckpointStore == StoreNATS {
		tmp, err := os.MkdirTemp("", "herd-checkpoint-")
		if err != nil {
			return "", err
		}
		defer os.RemoveAll(tmp)
		dir = filepath.Join(tmp, fmt.Sprintf("checkpoint-%d", step))
	}
	pos, _ := json.Marshal(j.plan.At(step))
	if err := j.eng.Save(dir, pos); err != nil {
		return "", err
	}
	size := dirSize(dir)
	span.SetAttributes(telemetry.AttrBytes.Int64(size))
	where := dir
	if j.w.cfg.CheckpointStore == StoreNATS {
		ref, err := UploadCheckpoint(j.w.nc, dir, fmt.Sprintf("%s/checkpoint-%d", j.id, step))
		if err != nil {
			return "", err
		}
		where = ref
	}
	tr.Checkpoint(ctx, time.Since(start).Seconds(), size)
	return where, j.w.report(ctx, proto.SubjectCheckpoint, proto.CheckpointReport{WorkerID: j.w.cfg.ID, Job: j.id, Epoch: a.Epoch, Step: step, Path: where, Paused: paused})
}

// finish saves the final checkpoint (the adapter) and reports completion.
func (j *job) finish(ctx context.Context, a *proto.Assignment, tr telemetry.TrainRecorder) error {
	where, err := j.checkpoint(ctx, a, false, tr)
	if err != nil {
		return fmt.Errorf("final checkpoint: %w", err)
	}
	return j.w.report(ctx, proto.SubjectComplete, proto.CompleteReport{WorkerID: j.w.cfg.ID, Job: j.id, Epoch: a.Epoch,
		Step: j.eng.Step(), Adapter: where, Loss: j.loss})
}

// dirSize is the bytes of the files under dir (a checkpoint), for the
// checkpoint metrics; what it cannot read counts as 0.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// reportTimeout bounds a report to the leader (retried through elections).
const reportTimeout = 30 * time.Second

// report sends a request to the leader and waits for its answer. The
// request carries ctx's span context: the leader's spans for it join the
// job's trace.
func (w *Worker) report(ctx context.Context, subject string, req any) error {
	ctx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	hdr := nats.Header{}
	telemetry.Inject(ctx, hdr)
	_, err := proto.CallMsg(ctx, w.nc, subject, w.cfg.Token, hdr, req, nil)
	if err != nil {
		w.log.Warn("report", "subject", subject, "err", err)
	}
	return err
}

// publish sends a message that needs no answer.
func (w *Worker) publish(subject string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		return
	}
	msg := &nats.Msg{Subject: subject, Header: nats.Header{proto.TokenHeader: []string{w.cfg.Token}}, Data: data}
	if err := w.nc.PublishMsg(msg); err != nil {
		w.log.Debug("publish", "subject", subject, "err", err)
	}
}
