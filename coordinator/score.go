package coordinator

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/herdml/herd/configs"
	"github.com/herdml/herd/internal/proto"
	"github.com/herdml/herd/scoring"
)

// The scoring fan-out, leader side. Each scoring phase in progress has a
// scoreRun in the leader's memory: the plan, the Merger on the job's spool,
// the leases and the progress. Request handlers (lease, result) only touch
// that memory; the flush loop (flushScores, every StatsFlush) expires
// leases, flushes the Merger and records what changed in one raft command
// per job, so that no batch waits for a raft round trip. A new leader
// rebuilds the scoreRun from the spool (what the old one flushed) and the
// FSM.

// DefaultScoreLease is how long a leased batch may stay without a result
// before it is issued again to another worker (a dead worker's batches are
// issued again as soon as its heartbeats stop).
const DefaultScoreLease = 5 * time.Minute

// ScoreDir is where a job's scoring outputs go, under its output_dir:
// predictions.jsonl, metrics.json and, while it runs, the spool.
func ScoreDir(outputDir string) string { return filepath.Join(outputDir, "scoring") }

// PlanScore computes the scoring plan of a config's scoring section, as
// the leader fixes it: rows cut by byte length (scoring.PlanFile).
func PlanScore(cfg *configs.Config, adapter string) (ScoreSpec, error) {
	sc := cfg.Scoring
	if sc.Data == "" {
		return ScoreSpec{}, errors.New("no data to score: set scoring.data (or dataset.eval)")
	}
	plan, fp, err := scoring.PlanFile(sc.Data, sc.Task, sc.BatchSize)
	if err != nil {
		return ScoreSpec{}, err
	}
	rows := 0
	for _, b := range plan {
		rows += len(b.Rows)
	}
	return ScoreSpec{Data: sc.Data, Adapter: adapter, Out: ScoreDir(cfg.OutputDir), Task: sc.Task, BatchSize: sc.BatchSize,
		Fingerprint: fp, Batches: len(plan), Rows: rows}, nil
}

type scoreLease struct {
	worker  string
	expires time.Time
}

type partKey struct {
	batch  int
	worker string
}

type scoreRun struct {
	job      string
	plan     []scoring.Batch
	merger   *scoring.Merger
	progress *scoring.Progress
	leases   map[int]scoreLease
	queue    []int // pending batches not leased, ascending (batch 0 is the longest)
	parts    map[partKey][]json.RawMessage
	finished bool
	// failErr fails the job at the next flush (a row error with
	// on_row_error fail).
	failErr error

	// Not yet recorded in raft.
	newLeases    []ScoreLeaseRec
	released     []int
	accepted     []int
	acceptedRows int64
	retried      int
	dups         int
}

type scoreRuns struct {
	mu   sync.Mutex
	runs map[string]*scoreRun
}

func (l *leader) scoreLease() time.Duration {
	if l.s.cfg.ScoreLease > 0 {
		return l.s.cfg.ScoreLease
	}
	return DefaultScoreLease
}

// scoreRunLocked returns the job's scoreRun, opening it (plan, Merger on the
// spool) on first use. Callers hold l.scores.mu.
func (l *leader) scoreRunLocked(j *Job) (*scoreRun, error) {
	if r, ok := l.scores.runs[j.ID]; ok {
		return r, nil
	}
	cfg, err := configs.Parse([]byte(j.ConfigYAML), "job.yaml", nil)
	if err != nil {
		return nil, fmt.Errorf("scoring %s: config: %w", j.ID, err)
	}
	sc := j.Score
	plan, fp, err := scoring.PlanFile(sc.Data, sc.Task, sc.BatchSize)
	if err != nil {
		return nil, fmt.Errorf("scoring %s: plan: %w", j.ID, err)
	}
	if fp != sc.Fingerprint {
		return nil, fmt.Errorf("scoring %s: the plan of %s is %s, the job recorded %s: the data file changed since the job started", j.ID, sc.Data, fp, sc.Fingerprint)
	}
	m, err := scoring.NewMerger(scoring.MergerOptions{Dir: sc.Out, Plan: plan, Spec: scoring.SpecFromConfig(cfg.Scoring)})
	if err != nil {
		return nil, fmt.Errorf("scoring %s: merger: %w", j.ID, err)
	}
	now := time.Now()
	r := &scoreRun{job: j.ID, plan: plan, merger: m, leases: map[int]scoreLease{}, parts: map[partKey][]json.RawMessage{},
		progress: scoring.NewProgress(plan, m.Accepted, now)}
	// Leases recorded by an earlier leader: their workers may still
	// deliver, so they are honoured for a liveness grace period only (a
	// worker that delivered to the old leader will not send again).
	recorded := map[int]ScoreLeaseRec{}
	for _, ls := range sc.Leases {
		recorded[ls.Batch] = ls
	}
	for _, b := range m.Pending() {
		if ls, ok := recorded[b]; ok {
			r.leases[b] = scoreLease{worker: ls.Worker, expires: minTime(ls.Expires, now.Add(l.grace()))}
			r.progress.Update(scoring.ProgressEvent{Kind: scoring.BatchIssued, Batch: b, Worker: ls.Worker, At: now})
			continue
		}
		r.queue = append(r.queue, b)
	}
	// Batches the spool holds but raft does not (flushed, then the leader
	// died before recording them) are recorded by the next flush.
	inFSM := map[int]bool{}
	for _, b := range sc.Accepted {
		inFSM[b] = true
	}
	for b := range plan {
		if m.Accepted(b) && !inFSM[b] {
			r.accepted = append(r.accepted, b)
			r.acceptedRows += int64(len(plan[b].Rows))
		}
	}
	l.s.log.Info("scoring run opened", "job", j.ID, "batches", len(plan), "pending", len(m.Pending()), "spool_accepted", len(plan)-len(m.Pending()))
	l.scores.runs[j.ID] = r
	return r, nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// scoreLeaseReq hands out up to Want pending batches.
func (l *leader) scoreLeaseReq(m *nats.Msg) (any, error) {
	var req proto.LeaseRequest
	if err := proto.Decode(m, &req); err != nil {
		return nil, err
	}
	j, err := l.job(req.Job)
	if err != nil {
		return nil, err
	}
	if !j.Scoring() || proto.Terminal(j.Status) {
		return proto.LeaseResult{Done: true}, nil
	}
	if j.Status != proto.StatusRunning {
		// Waiting for workers or paused: not done, nothing to hand out.
		return proto.LeaseResult{RetryMs: 500}, nil
	}
	if req.Fingerprint != j.Score.Fingerprint {
		return nil, proto.Errorf(proto.CodeInvalid, "worker %s planned %s as %s, the job's plan is %s: does it see the same data file?",
			req.WorkerID, j.Score.Data, req.Fingerprint, j.Score.Fingerprint)
	}
	now := time.Now()
	l.scores.mu.Lock()
	defer l.scores.mu.Unlock()
	r, err := l.scoreRunLocked(j)
	if err != nil {
		return nil, err
	}
	if r.finished || len(r.queue) == 0 && len(r.leases) == 0 {
		return proto.LeaseResult{Done: true}, nil
	}
	res := proto.LeaseResult{Batches: l.issueLocked(r, req.WorkerID, max(req.Want, 1), now)}
	if len(res.Batches) == 0 {
		res.RetryMs = 200
	}
	return res, nil
}

// issueLocked leases up to want queued batches to worker.
func (l *leader) issueLocked(r *scoreRun, worker string, want int, now time.Time) []int {
	var out []int
	for len(out) < want && len(r.queue) > 0 {
		b := r.queue[0]
		r.queue = r.queue[1:]
		if r.merger.Accepted(b) {
			continue
		}
		ls := scoreLease{worker: worker, expires: now.Add(l.scoreLease())}
		r.leases[b] = ls
		r.newLeases = append(r.newLeases, ScoreLeaseRec{Batch: b, Worker: ls.worker, Expires: ls.expires})
		r.progress.Update(scoring.ProgressEvent{Kind: scoring.BatchIssued, Batch: b, Worker: worker, At: now})
		out = append(out, b)
	}
	return out
}

// scoreResult takes one chunk of a batch's predictions; a batch whose chunks
// are all here goes to the Merger, which accepts it once.
func (l *leader) scoreResult(m *nats.Msg) (any, error) {
	var c proto.ResultChunk
	if err := proto.Decode(m, &c); err != nil {
		return nil, err
	}
	j, err := l.job(c.Job)
	if err != nil {
		return nil, err
	}
	if c.Parts < 1 || c.Part < 0 || c.Part >= c.Parts {
		return nil, proto.Errorf(proto.CodeInvalid, "chunk %d of %d", c.Part, c.Parts)
	}
	if !j.Scoring() {
		// Finished (a late copy) or cancelled: nothing to do, but ack.
		return proto.LeaseResult{}, nil
	}
	now := time.Now()
	l.scores.mu.Lock()
	defer l.scores.mu.Unlock()
	r, err := l.scoreRunLocked(j)
	if err != nil {
		return nil, err
	}
	if c.Batch < 0 || c.Batch >= len(r.plan) {
		return nil, proto.Errorf(proto.CodeInvalid, "batch %d of %d", c.Batch, len(r.plan))
	}
	if r.finished || r.merger.Accepted(c.Batch) {
		if c.Part == c.Parts-1 {
			// One copy of a batch already accepted: counted once, on its
			// last chunk. The Merger counts it in metrics.json too.
			_, _ = r.merger.Accept(c.Batch, nil)
			r.dups++
			r.progress.Update(scoring.ProgressEvent{Kind: scoring.BatchDuplicate, Batch: c.Batch, Worker: c.WorkerID, At: now})
		}
		return proto.LeaseResult{}, nil
	}
	raw := c.Preds
	if c.Parts > 1 {
		k := partKey{c.Batch, c.WorkerID}
		ps := r.parts[k]
		if len(ps) != c.Parts {
			ps = make([]json.RawMessage, c.Parts)
			r.parts[k] = ps
		}
		ps[c.Part] = slices.Clone(c.Preds)
		for _, p := range ps {
			if p == nil {
				return proto.LeaseResult{}, nil
			}
		}
		delete(r.parts, k)
		var all []json.RawMessage
		for _, p := range ps {
			var part []json.RawMessage
			if err := json.Unmarshal(p, &part); err != nil {
				return nil, proto.Errorf(proto.CodeInvalid, "batch %d: predictions: %v", c.Batch, err)
			}
			all = append(all, part...)
		}
		if raw, err = json.Marshal(all); err != nil {
			return nil, err
		}
	}
	var preds []scoring.Prediction
	if err := json.Unmarshal(raw, &preds); err != nil {
		return nil, proto.Errorf(proto.CodeInvalid, "batch %d: predictions: %v", c.Batch, err)
	}
	ok, err := r.merger.Accept(c.Batch, preds)
	switch {
	case errors.Is(err, scoring.ErrRowFailed):
		// on_row_error: fail. The flush loop fails the job.
		r.failErr = err
		return nil, proto.Errorf(proto.CodeInvalid, "%v", err)
	case err != nil && !ok:
		// A malformed result is refused; the batch is issued again.
		l.releaseLocked(r, c.Batch, now)
		return nil, proto.Errorf(proto.CodeInvalid, "batch %d: %v", c.Batch, err)
	case err != nil:
		// Accepted, but spilling to the spool failed: the next flush
		// retries and fails the job if it cannot.
		l.s.log.Warn("scoring spill", "job", j.ID, "err", err)
	}
	if !ok {
		r.dups++
		r.progress.Update(scoring.ProgressEvent{Kind: scoring.BatchDuplicate, Batch: c.Batch, Worker: c.WorkerID, At: now})
		return proto.LeaseResult{}, nil
	}
	delete(r.leases, c.Batch)
	r.accepted = append(r.accepted, c.Batch)
	r.acceptedRows += int64(len(r.plan[c.Batch].Rows))
	r.progress.Update(scoring.ProgressEvent{Kind: scoring.BatchDone, Batch: c.Batch, Worker: c.WorkerID, At: now})
	if len(r.queue) == 0 && len(r.leases) == 0 {
		select { // the leader loop finishes the job
		case l.scoreDue <- struct{}{}:
		default:
		}
	}
	// The ack carries the worker's next lease: one round trip per batch
	// instead of two.
	var res proto.LeaseResult
	if c.Want > 0 && j.Status == proto.StatusRunning && slices.Contains(j.Epoch.Members, c.WorkerID) {
		res.Batches = l.issueLocked(r, c.WorkerID, c.Want, now)
	}
	return res, nil
}

// releaseLocked puts a leased batch back in the queue.
func (l *leader) releaseLocked(r *scoreRun, b int, now time.Time) {
	ls, ok := r.leases[b]
	if !ok {
		return
	}
	delete(r.leases, b)
	r.released = append(r.released, b)
	// Counted when the lease is lost (every lost lease is issued again),
	// so that the count survives a change of leader.
	r.retried++
	r.progress.Update(scoring.ProgressEvent{Kind: scoring.BatchLost, Batch: b, Worker: ls.worker, At: now})
	i, _ := slices.BinarySearch(r.queue, b)
	r.queue = slices.Insert(r.queue, i, b)
}

// flushScores runs from the leader loop: it issues again the batches of
// dead workers and expired leases, flushes the Mergers, records what
// changed in raft (one command per job) and finishes the complete jobs.
func (l *leader) flushScores() {
	st := l.s.fsm.State()
	now := time.Now()
	var jobs []*Job
	for _, j := range st.JobList() {
		if j.Scoring() && j.Status == proto.StatusRunning {
			jobs = append(jobs, j)
		}
	}
	l.scores.mu.Lock()
	for id := range l.scores.runs {
		if j, ok := st.Jobs[id]; !ok || !j.Scoring() || !j.Active() {
			delete(l.scores.runs, id)
		}
	}
	l.scores.mu.Unlock()
	if len(jobs) == 0 {
		return
	}
	// Liveness first (l.mu), leases next (l.scores.mu): never both held.
	alive := map[string]bool{}
	l.mu.Lock()
	for id := range st.Workers {
		alive[id] = l.alive(id, now, true)
	}
	l.mu.Unlock()
	for _, j := range jobs {
		if err := l.flushScore(j, alive, now); err != nil {
			if errors.Is(err, ErrNotLeader) {
				return
			}
			l.s.log.Error("scoring failed", "job", j.ID, "err", err)
			if _, aerr := l.s.apply(JobStatusType, JobStatusCmd{Job: j.ID, Status: proto.StatusFailed, Error: err.Error(), At: now}); aerr != nil && !errors.Is(aerr, ErrRejected) {
				l.s.log.Warn("fail scoring job", "job", j.ID, "err", aerr)
			}
		}
	}
}

func (l *leader) flushScore(j *Job, alive map[string]bool, now time.Time) error {
	l.scores.mu.Lock()
	r, err := l.scoreRunLocked(j)
	if err != nil {
		l.scores.mu.Unlock()
		return err
	}
	if r.failErr != nil {
		l.scores.mu.Unlock()
		return r.failErr
	}
	for _, b := range slices.Sorted(maps.Keys(r.leases)) {
		ls := r.leases[b]
		// A worker that left the job's group (re-formed without it) stops
		// scoring it: its leases go back too.
		if !alive[ls.worker] || now.After(ls.expires) || !slices.Contains(j.Epoch.Members, ls.worker) {
			l.s.log.Info("scoring batch issued again", "job", j.ID, "batch", b, "worker", ls.worker, "alive", alive[ls.worker])
			l.releaseLocked(r, b, now)
		}
	}
	cmd := ScoreProgressCmd{Job: j.ID, Leases: r.newLeases, Released: r.released, Accepted: r.accepted, Rows: r.acceptedRows,
		Retried: r.retried, Duplicates: r.dups, At: now}
	r.newLeases, r.released, r.accepted, r.acceptedRows, r.retried, r.dups = nil, nil, nil, 0, 0, 0
	complete := !r.finished && len(r.queue) == 0 && len(r.leases) == 0 && len(r.merger.Pending()) == 0
	l.scores.mu.Unlock()

	restore := func() {
		l.scores.mu.Lock()
		r.newLeases = append(cmd.Leases, r.newLeases...)
		r.released = append(cmd.Released, r.released...)
		r.accepted = append(cmd.Accepted, r.accepted...)
		r.acceptedRows += cmd.Rows
		r.retried += cmd.Retried
		r.dups += cmd.Duplicates
		l.scores.mu.Unlock()
	}
	if len(cmd.Leases)+len(cmd.Released)+len(cmd.Accepted)+cmd.Retried+cmd.Duplicates > 0 {
		// Flush before recording: a batch raft calls accepted is in the
		// spool, so no leader ever scores it again.
		if len(cmd.Accepted) > 0 || cmd.Duplicates > 0 {
			if err := r.merger.Flush(); err != nil {
				restore()
				return fmt.Errorf("scoring %s: flush the spool: %w", j.ID, err)
			}
		}
		if _, err := l.s.apply(ScoreProgressType, cmd); err != nil {
			restore()
			if errors.Is(err, ErrRejected) {
				return nil
			}
			if errors.Is(err, ErrNotLeader) {
				return err
			}
			l.s.log.Warn("record scoring progress", "job", j.ID, "err", err)
			return nil
		}
	}
	if !complete {
		return nil
	}
	res, err := r.merger.Finish()
	if err != nil {
		return fmt.Errorf("scoring %s: write the outputs: %w", j.ID, err)
	}
	l.scores.mu.Lock()
	r.finished = true
	l.scores.mu.Unlock()
	if _, err := l.s.apply(ScoreFinishType, ScoreFinishCmd{Job: j.ID, Metrics: finiteMetrics(res.Metrics), Rows: res.Counts.Rows,
		Errors: res.Counts.RowsWithErrors, At: time.Now()}); err != nil && !errors.Is(err, ErrRejected) {
		// The outputs are written; a later leader finds no spool and
		// would start over, so keep trying from this one.
		l.scores.mu.Lock()
		r.finished = false
		l.scores.mu.Unlock()
		if errors.Is(err, ErrNotLeader) {
			return err
		}
		l.s.log.Warn("record scoring completion", "job", j.ID, "err", err)
		return nil
	}
	l.s.log.Info("scoring completed", "job", j.ID, "rows", res.Counts.Rows, "out", j.Score.Out)
	return nil
}

// finiteMetrics maps a non-finite metric to nil (null in JSON).
func finiteMetrics(m map[string]float64) map[string]*float64 {
	out := make(map[string]*float64, len(m))
	for k, v := range m {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			out[k] = nil
			continue
		}
		out[k] = &v
	}
	return out
}

// scoreInfo overlays the leader's live progress on the recorded one.
func (l *leader) scoreInfo(j *Job, info *proto.ScoreInfo) {
	l.scores.mu.Lock()
	defer l.scores.mu.Unlock()
	r, ok := l.scores.runs[j.ID]
	if !ok || !j.Scoring() {
		return
	}
	p := r.progress
	info.RowsDone, info.BatchesInFlight = p.RowsDone, p.BatchesInFlight
	info.BatchesRetried = max(info.BatchesRetried, p.BatchesRetried)
	info.DuplicatesDropped = max(info.DuplicatesDropped, int(r.merger.Result().Counts.DuplicatesDropped))
	info.RowsPerSec, info.ETASec = p.RowsPerSec, p.ETA.Seconds()
	info.Workers = map[string]proto.ScoreWorker{}
	for name, w := range p.Workers {
		info.Workers[name] = proto.ScoreWorker{Rows: w.Rows, Batches: w.Batches, InFlight: w.InFlight, Lost: w.Lost}
	}
	info.Metrics = finiteMetrics(r.merger.Result().Metrics)
}
