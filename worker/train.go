package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/herdml/herd/collective"
	"github.com/herdml/herd/configs"
	"github.com/herdml/herd/dataset"
	"github.com/herdml/herd/internal/proto"
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
	w.setInterval(j.cfg.Cluster.Heartbeat)
	defer w.setInterval(0)
	log.Info("job loaded", "sequences", j.data.Len(), "global_batch", j.plan.G, "steps", j.total)
	var done uint64 // the last epoch run
	for ctx.Err() == nil {
		cur, status := w.current()
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
	return j, nil
}

// closingEngine also releases the data when the engine is closed.
type closingEngine struct {
	Engine
	close func() error
}

// MicroBatches forwards to the wrapped engine's, or runs the batches one
// by one.
func (e *closingEngine) MicroBatches(bs []Batch) (MicroResult, error) {
	if be, ok := e.Engine.(BatchEngine); ok {
		return be.MicroBatches(bs)
	}
	var total MicroResult
	for _, b := range bs {
		r, err := e.Engine.MicroBatch(b)
		if err != nil {
			return total, err
		}
		total.LossSum += r.LossSum
		total.Tokens += r.Tokens
	}
	return total, nil
}

func (e *closingEngine) Close() {
	e.Engine.Close()
	_ = e.close()
}

// runEpoch runs one group epoch: join, synchronise state, train until the
// end of the job or a failure.
func (j *job) runEpoch(ctx context.Context, a *proto.Assignment) error {
	w := j.w
	log := w.log.With("job", j.id, "epoch", a.Epoch, "rank", a.Rank, "world", a.World)
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
	m, err := collective.Join(ctx, j.tr, a.Group(), a.Epoch, a.Rank, a.World, j.collCf)
	if err != nil {
		return err
	}
	defer m.Close()
	syncStart := time.Now()
	if err := j.sync(ctx, m, a); err != nil {
		return err
	}
	log.Info("group epoch started", "step", j.eng.Step(), "sync_ms", time.Since(syncStart).Milliseconds())
	w.setStatus(j.id, a.Epoch, proto.WorkerTraining, j.eng.Step(), "")
	for j.eng.Step() < j.total {
		if cur, _ := w.current(); cur == nil || cur.Job != j.id || cur.Epoch != a.Epoch || cur.Status != proto.StatusRunning {
			return errSuperseded
		}
		if w.paused.Load() {
			if a.Rank == 0 {
				if _, err := j.checkpoint(ctx, a, true); err != nil {
					log.Error("checkpoint on pause", "err", err)
				}
			}
			return errPaused
		}
		if err := j.step(ctx, m, a); err != nil {
			return err
		}
		w.setStatus(j.id, a.Epoch, proto.WorkerTraining, j.eng.Step(), "")
	}
	if a.Rank == 0 {
		if err := j.finish(ctx, a); err != nil {
			return err
		}
	}
	return errFinished
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
// and loss, and the optimizer step.
func (j *job) step(ctx context.Context, m *collective.Member, a *proto.Assignment) error {
	w := j.w
	start := time.Now()
	if w.cfg.StepDelay > 0 {
		time.Sleep(w.cfg.StepDelay)
	}
	k := j.eng.Step()
	pos := j.plan.At(k)
	shard := j.plan.Shard(pos.Epoch, pos.Step, a.Rank, a.World)
	var lossSum float64
	var tokens int
	if w.cfg.FailAtStep == k+1 && w.failed.CompareAndSwap(false, true) {
		return culpritError{fmt.Errorf("engine: injected failure at step %d", k+1)}
	}
	var batches []Batch
	for _, mb := range dataset.MicroBatches(shard, j.cfg.Training.MicroBatchSize) {
		ids, labels, rows, seqLen := j.data.Batch(mb)
		batches = append(batches, Batch{IDs: ids, Labels: labels, B: rows, S: seqLen})
	}
	if be, ok := j.eng.(BatchEngine); ok && len(batches) > 0 {
		r, err := be.MicroBatches(batches)
		if err != nil {
			return culpritError{err}
		}
		lossSum, tokens = r.LossSum, r.Tokens
	} else {
		for _, b := range batches {
			r, err := j.eng.MicroBatch(b)
			if err != nil {
				return culpritError{err}
			}
			lossSum += r.LossSum
			tokens += r.Tokens
		}
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
	arStart := time.Now()
	if err := m.AllReduce(ctx, j.grad, collective.Sum); err != nil {
		return err
	}
	arTime := time.Since(arStart)
	total := int(j.grad[n])
	st, err := j.eng.Apply(j.grad[:n], total)
	if err != nil {
		return culpritError{err}
	}
	j.loss = float64(j.grad[n+1]) / float64(max(total, 1))
	if a.Rank != 0 {
		return nil
	}
	el := time.Since(start)
	stat := proto.StepStat{Step: st.Step, TotalSteps: j.total, Epoch: pos.Epoch, Loss: j.loss,
		Tokens: total, LR: st.LR, GradNorm: st.GradNorm, World: a.World,
		StepMs: float64(el.Microseconds()) / 1000, AllReduceMs: float64(arTime.Microseconds()) / 1000,
		TokensPerSec: float64(total) / el.Seconds(), At: time.Now()}
	if w.cfg.Progress != nil {
		w.cfg.Progress(j.id, stat)
	}
	if every := j.cfg.Training.LogEvery; every <= 1 || st.Step%every == 0 || st.Step == j.total {
		w.publish(proto.SubjectStep, proto.StepReport{WorkerID: w.cfg.ID, Job: j.id, Epoch: a.Epoch, Stat: stat})
	}
	if every := j.cfg.Training.CheckpointEvery; every > 0 && st.Step%every == 0 && st.Step < j.total {
		if _, err := j.checkpoint(ctx, a, false); err != nil {
			w.log.Error("checkpoint", "step", st.Step, "err", err)
		}
	}
	return nil
}

// checkpointDir is where step's checkpoint goes.
func (j *job) checkpointDir(step int) string {
	return filepath.Join(j.cfg.OutputDir, "checkpoints", fmt.Sprintf("checkpoint-%d", step))
}

// checkpoint saves the current state, records it with the coordinator and
// returns where it is: a directory under output_dir, or an object store
// reference.
func (j *job) checkpoint(ctx context.Context, a *proto.Assignment, paused bool) (string, error) {
	step := j.eng.Step()
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
	where := dir
	if j.w.cfg.CheckpointStore == StoreNATS {
		ref, err := UploadCheckpoint(j.w.nc, dir, fmt.Sprintf("%s/checkpoint-%d", j.id, step))
		if err != nil {
			return "", err
		}
		where = ref
	}
	return where, j.w.report(ctx, proto.SubjectCheckpoint, proto.CheckpointReport{WorkerID: j.w.cfg.ID, Job: j.id, Epoch: a.Epoch, Step: step, Path: where, Paused: paused})
}

// finish saves the final checkpoint (the adapter) and reports completion.
func (j *job) finish(ctx context.Context, a *proto.Assignment) error {
	where, err := j.checkpoint(ctx, a, false)
	if err != nil {
		return fmt.Errorf("final checkpoint: %w", err)
	}
	return j.w.report(ctx, proto.SubjectComplete, proto.CompleteReport{WorkerID: j.w.cfg.ID, Job: j.id, Epoch: a.Epoch,
		Step: j.eng.Step(), Adapter: where, Loss: j.loss})
}

// reportTimeout bounds a report to the leader (retried through elections).
const reportTimeout = 30 * time.Second

// report sends a request to the leader and waits for its answer.
func (w *Worker) report(ctx context.Context, subject string, req any) error {
	ctx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	err := proto.Call(ctx, w.nc, subject, w.cfg.Token, req, nil)
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
