package coordinator

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"

	"github.com/herdml/herd/collective"
	"github.com/herdml/herd/configs"
	"github.com/herdml/herd/internal/proto"
	"github.com/herdml/herd/telemetry"
)

// The job API (CLI) and the worker protocol, served by the leader. Each
// handler decodes its request, proposes raft commands as needed and returns
// the result for the reply.

func (l *leader) submit(m *nats.Msg) (_ any, err error) {
	var req proto.SubmitRequest
	if err := proto.Decode(m, &req); err != nil {
		return nil, err
	}
	now := time.Now()
	if req.ResumeJob != "" {
		if _, err := l.job(req.ResumeJob); err != nil {
			return nil, err
		}
		if _, err := l.s.apply(ResumeJobType, ResumeJobCmd{Job: req.ResumeJob, At: now}); err != nil {
			return nil, conflict(err)
		}
		j, _ := l.job(req.ResumeJob)
		return proto.SubmitResult{Job: j.Info(false)}, nil
	}
	// A retried submission the log already holds returns its job here,
	// before a job span is started: a second one would root a trace that
	// no job continues. (The FSM dedupes too: this is only the fast path.)
	if req.RequestID != "" {
		for _, j := range l.s.fsm.State().Jobs {
			if j.RequestID == req.RequestID {
				return proto.SubmitResult{Job: j.Info(false)}, nil
			}
		}
	}
	name := req.Name
	if name == "" {
		name = "run"
	}
	cfg, err := configs.Parse([]byte(req.ConfigYAML), name+".yaml", nil)
	if err != nil {
		return nil, &proto.Error{Code: proto.CodeInvalid, Message: "the config has problems:\n" + err.Error(), Hint: "check it with `herd config validate`"}
	}
	c := cfg.Cluster
	gb := cfg.Training.GlobalBatchSize
	if gb == 0 {
		n := c.Workers
		if n == 0 {
			n = l.freeWorkers(now)
			if c.MaxWorkers > 0 {
				n = min(n, c.MaxWorkers)
			}
			n = max(n, c.MinWorkers, 1)
		}
		gb = cfg.Training.MicroBatchSize * cfg.Training.GradAccum * n
	}
	// The job span roots the job's trace (or joins the submitter's, when
	// its request carries one); its context is stored with the job so
	// that later leaders and the workers continue the trace.
	ctx, span := l.s.cfg.Telemetry.Start(telemetry.Extract(context.Background(), m.Header), telemetry.SpanJob,
		trace.WithAttributes(telemetry.AttrRun.String(cfg.RunName)))
	defer func() { telemetry.End(span, err) }()
	cmd := SubmitJobCmd{
		RequestID: req.RequestID, Name: cfg.RunName, ConfigYAML: req.ConfigYAML, OutputDir: cfg.OutputDir, GlobalBatch: gb,
		Workers: c.Workers, MinWorkers: c.MinWorkers, MaxWorkers: c.MaxWorkers, MaxRestarts: c.MaxRestarts,
		HeartbeatMs: c.Heartbeat.Milliseconds(), TimeoutMs: c.Timeout.Milliseconds(), TraceParent: telemetry.TraceParent(ctx), At: now,
	}
	if req.Score {
		// The leader plans from the data file (a path it sees, like the
		// workers): no model or tokenizer needed here.
		spec, err := PlanScore(cfg, req.Adapter)
		if err != nil {
			return nil, &proto.Error{Code: proto.CodeInvalid, Message: "scoring: " + err.Error(),
				Hint: "the data file must be on a path the coordinators and the workers see"}
		}
		if req.ScoreOut != "" {
			spec.Out = req.ScoreOut
		}
		cmd.Kind, cmd.Score, cmd.GlobalBatch = proto.KindScore, &spec, 1
	}
	res, err := l.s.apply(SubmitJobType, cmd)
	if err != nil {
		return nil, err
	}
	j, _ := l.job(res.(string))
	span.SetAttributes(telemetry.AttrJob.String(j.ID))
	l.s.log.Info("job submitted", "job", j.ID, "name", j.Name, "global_batch", gb)
	return proto.SubmitResult{Job: j.Info(false)}, nil
}

func conflict(err error) error {
	return &proto.Error{Code: proto.CodeConflict, Message: err.Error()}
}

func (l *leader) jobs(m *nats.Msg) (any, error) {
	var res proto.JobsResult
	for _, j := range l.s.fsm.State().JobList() {
		res.Jobs = append(res.Jobs, j.Info(false))
	}
	return res, nil
}

func (l *leader) status(m *nats.Msg) (any, error) {
	var req proto.StatusRequest
	if err := proto.Decode(m, &req); err != nil {
		return nil, err
	}
	if req.Job != "" {
		j, err := l.job(req.Job)
		if err != nil {
			return nil, err
		}
		info := j.Info(true)
		info.RecentSteps, info.LastEval = j.RecentSteps(RecentSteps), j.LastEval()
		if info.Score != nil {
			l.scoreInfo(j, info.Score)
		}
		return proto.StatusResult{Job: &info}, nil
	}
	ci := &proto.ClusterInfo{Leader: l.s.cfg.ID}
	if f := l.s.raft.GetConfiguration(); f.Error() == nil {
		for _, srv := range f.Configuration().Servers {
			ci.Servers = append(ci.Servers, proto.ServerInfo{ID: string(srv.ID), RaftAddr: string(srv.Address), Leader: string(srv.ID) == l.s.cfg.ID})
		}
	}
	st := l.s.fsm.State()
	now := time.Now()
	member := map[string]string{}
	for _, j := range st.Jobs {
		if j.Status == proto.StatusRunning {
			for _, w := range j.Epoch.Members {
				member[w] = j.ID
			}
		}
	}
	l.mu.Lock()
	for _, w := range st.WorkerList() {
		wi := proto.WorkerInfo{ID: w.ID, Host: w.Host, Device: w.Device, Failures: w.Failures,
			Alive: l.alive(w.ID, now, member[w.ID] != ""), Job: member[w.ID]}
		if now.Before(w.ExcludedUntil) {
			wi.ExcludedUntil = w.ExcludedUntil
		}
		if lv, ok := l.live[w.ID]; ok {
			wi.LastSeen, wi.State, wi.Step = lv.last, lv.hb.State, lv.hb.Step
		}
		ci.Workers = append(ci.Workers, wi)
	}
	l.mu.Unlock()
	for _, j := range st.JobList() {
		ci.Jobs = append(ci.Jobs, j.Info(false))
	}
	return proto.StatusResult{Cluster: ci}, nil
}

func (l *leader) cancelJob(m *nats.Msg) (any, error) {
	var req proto.CancelRequest
	if err := proto.Decode(m, &req); err != nil {
		return nil, err
	}
	j, err := l.job(req.Job)
	if err != nil {
		return nil, err
	}
	if proto.Terminal(j.Status) {
		return nil, &proto.Error{Code: proto.CodeConflict, Message: fmt.Sprintf("job %s is already %s", j.ID, j.Status)}
	}
	if _, err := l.s.apply(JobStatusType, JobStatusCmd{Job: j.ID, Status: proto.StatusCancelled, Message: "by request", At: time.Now()}); err != nil {
		return nil, conflict(err)
	}
	l.announce(j.ID, j.Epoch.Number+1)
	j, _ = l.job(req.Job)
	return j.Info(false), nil
}

func (l *leader) logs(m *nats.Msg) (any, error) {
	var req proto.LogsRequest
	if err := proto.Decode(m, &req); err != nil {
		return nil, err
	}
	j, err := l.job(req.Job)
	if err != nil {
		return nil, err
	}
	i, _ := slices.BinarySearchFunc(j.Log, req.After+1, func(e proto.LogEntry, seq uint64) int {
		switch {
		case e.Seq < seq:
			return -1
		case e.Seq > seq:
			return 1
		}
		return 0
	})
	entries := j.Log[i:]
	const maxEntries = 1000
	if len(entries) > maxEntries {
		entries = entries[:maxEntries]
	}
	return proto.LogsResult{Entries: entries, Status: j.Status}, nil
}

func (l *leader) addVoter(m *nats.Msg) (any, error) {
	var req proto.AddVoterRequest
	if err := proto.Decode(m, &req); err != nil {
		return nil, err
	}
	if err := proto.ValidID(req.ID); err != nil {
		return nil, proto.Errorf(proto.CodeInvalid, "%v", err)
	}
	if err := l.s.raft.AddVoter(raft.ServerID(req.ID), raft.ServerAddress(req.RaftAddr), 0, l.s.cfg.ApplyTimeout).Error(); err != nil {
		return nil, fmt.Errorf("add voter %s at %s: %w", req.ID, req.RaftAddr, err)
	}
	l.s.log.Info("voter added", "id", req.ID, "raft_addr", req.RaftAddr)
	return l.s.clusterInfo(), nil
}

func (l *leader) removeVoter(m *nats.Msg) (any, error) {
	var req proto.RemoveVoterRequest
	if err := proto.Decode(m, &req); err != nil {
		return nil, err
	}
	if err := l.s.raft.RemoveServer(raft.ServerID(req.ID), 0, l.s.cfg.ApplyTimeout).Error(); err != nil {
		return nil, fmt.Errorf("remove voter %s: %w", req.ID, err)
	}
	l.s.log.Info("voter removed", "id", req.ID)
	return l.s.clusterInfo(), nil
}

// clusterInfo lists the raft servers.
func (s *Server) clusterInfo() proto.ClusterInfo {
	ci := proto.ClusterInfo{Leader: s.Leader()}
	if f := s.raft.GetConfiguration(); f.Error() == nil {
		for _, srv := range f.Configuration().Servers {
			ci.Servers = append(ci.Servers, proto.ServerInfo{ID: string(srv.ID), RaftAddr: string(srv.Address), Leader: string(srv.ID) == ci.Leader})
		}
	}
	return ci
}

func (l *leader) register(m *nats.Msg) (any, error) {
	var req proto.RegisterRequest
	if err := proto.Decode(m, &req); err != nil {
		return nil, err
	}
	if err := proto.ValidID(req.ID); err != nil {
		return nil, proto.Errorf(proto.CodeInvalid, "worker %v", err)
	}
	now := time.Now()
	if _, err := l.s.apply(RegisterWorkerType, RegisterWorkerCmd{Worker: req, At: now}); err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.live[req.ID] = &liveness{last: now, hb: proto.Heartbeat{WorkerID: req.ID, IntervalMs: l.s.cfg.Heartbeat.Milliseconds(), State: proto.WorkerIdle}}
	l.mu.Unlock()
	l.s.log.Info("worker registered", "worker", req.ID, "host", req.Host, "device", req.Device)
	return proto.RegisterResult{HeartbeatMs: l.s.cfg.Heartbeat.Milliseconds()}, nil
}

func (l *leader) heartbeat(m *nats.Msg) (any, error) {
	var hb proto.Heartbeat
	if err := proto.Decode(m, &hb); err != nil {
		return nil, err
	}
	st := l.s.fsm.State()
	if _, ok := st.Workers[hb.WorkerID]; !ok {
		return proto.HeartbeatResult{Unknown: true}, nil
	}
	l.mu.Lock()
	prev := l.live[hb.WorkerID]
	// A failure reported for an epoch is kept until the worker moves on,
	// even if a heartbeat sent before the report arrives later.
	if prev != nil && prev.hb.State == proto.WorkerFailed && hb.Job == prev.hb.Job && hb.Epoch == prev.hb.Epoch && hb.State != proto.WorkerFailed {
		hb.State, hb.Error = proto.WorkerFailed, prev.hb.Error
	}
	l.live[hb.WorkerID] = &liveness{last: time.Now(), hb: hb}
	l.mu.Unlock()
	var (
		res proto.HeartbeatResult
		hdr nats.Header
	)
	for _, j := range st.JobList() {
		if j.Status != proto.StatusRunning && j.Status != proto.StatusPaused {
			continue
		}
		if rank := slices.Index(j.Epoch.Members, hb.WorkerID); rank >= 0 {
			res.Assignment = &proto.Assignment{Job: j.ID, Status: j.Status, ConfigYAML: j.ConfigYAML, GlobalBatch: j.GlobalBatch,
				Epoch: j.Epoch.Number, Rank: rank, World: len(j.Epoch.Members), Members: slices.Clone(j.Epoch.Members),
				Checkpoint: j.LatestCheckpoint()}
			hdr = nats.Header{}
			telemetry.Inject(telemetry.WithTraceParent(context.Background(), j.Epoch.TraceParent), hdr)
			if sc := j.Score; sc != nil && !sc.Done {
				res.Assignment.Score = &proto.ScoreAssignment{Data: sc.Data, Adapter: sc.Adapter, Task: sc.Task, BatchSize: sc.BatchSize,
					Fingerprint: sc.Fingerprint, Batches: sc.Batches, Rows: sc.Rows}
			}
			break
		}
	}
	if hb.Job != "" {
		if j, ok := st.Jobs[hb.Job]; ok {
			res.JobStatus = j.Status
		}
	}
	// The assignment's reply carries the group epoch's trace context: the
	// worker's spans of the epoch are its children.
	return withHeader{res, hdr}, nil
}

func (l *leader) step(m *nats.Msg) (any, error) {
	var rep proto.StepReport
	if err := proto.Decode(m, &rep); err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.stats[rep.Job] = append(l.stats[rep.Job], rep.Stat)
	l.mu.Unlock()
	return nil, nil
}

func (l *leader) checkpoint(m *nats.Msg) (_ any, err error) {
	var rep proto.CheckpointReport
	if err := proto.Decode(m, &rep); err != nil {
		return nil, err
	}
	if _, err := l.job(rep.Job); err != nil {
		return nil, err
	}
	// A child of the worker's checkpoint span, from the report's headers.
	_, span := l.s.cfg.Telemetry.Start(telemetry.Extract(context.Background(), m.Header), telemetry.SpanCheckpointCommit,
		trace.WithAttributes(telemetry.AttrJob.String(rep.Job), telemetry.AttrStep.Int(rep.Step)))
	defer func() { telemetry.End(span, err) }()
	l.flushStats()
	if _, err := l.s.apply(CheckpointType, CheckpointCmd{Job: rep.Job, Step: rep.Step, Path: rep.Path, Paused: rep.Paused, At: time.Now()}); err != nil {
		return nil, err
	}
	return proto.Empty{}, nil
}

func (l *leader) failure(m *nats.Msg) (any, error) {
	var rep proto.FailureReport
	if err := proto.Decode(m, &rep); err != nil {
		return nil, err
	}
	j, err := l.job(rep.Job)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	l.s.log.Warn("worker reports failure", "worker", rep.WorkerID, "job", rep.Job, "epoch", rep.Epoch, "err", rep.Error, "fatal", rep.Fatal, "culprit", rep.Culprit)
	if rep.Fatal && j.Active() {
		if _, err := l.s.apply(JobStatusType, JobStatusCmd{Job: j.ID, Status: proto.StatusFailed,
			Error: fmt.Sprintf("worker %s: %s", rep.WorkerID, rep.Error), At: now}); err != nil {
			return nil, conflict(err)
		}
		l.announce(j.ID, j.Epoch.Number+1)
		return proto.Empty{}, nil
	}
	if rep.Culprit {
		if err := l.countFailure(rep.WorkerID, rep.Job, rep.Error, now); err != nil {
			return nil, err
		}
	}
	l.mu.Lock()
	if lv, ok := l.live[rep.WorkerID]; ok {
		lv.hb.Job, lv.hb.Epoch, lv.hb.State, lv.hb.Error = rep.Job, rep.Epoch, proto.WorkerFailed, rep.Error
	}
	l.mu.Unlock()
	l.s.poke()
	return proto.Empty{}, nil
}

func (l *leader) complete(m *nats.Msg) (any, error) {
	var rep proto.CompleteReport
	if err := proto.Decode(m, &rep); err != nil {
		return nil, err
	}
	j, err := l.job(rep.Job)
	if err != nil {
		return nil, err
	}
	if j.Status == proto.StatusCompleted || j.Score != nil {
		return proto.Empty{}, nil
	}
	l.flushStats()
	started, note, err := l.startScoring(j, rep)
	if started || err != nil {
		return proto.Empty{}, err
	}
	msg := fmt.Sprintf("%d steps, final loss %.4f, adapter %s", rep.Step, rep.Loss, rep.Adapter)
	if note != "" {
		msg += "; " + note
	}
	if _, err := l.s.apply(JobStatusType, JobStatusCmd{Job: j.ID, Status: proto.StatusCompleted, Adapter: rep.Adapter, Step: rep.Step,
		Message: msg, At: time.Now()}); err != nil {
		return nil, conflict(err)
	}
	l.s.log.Info("job completed", "job", j.ID, "adapter", rep.Adapter)
	return proto.Empty{}, nil
}

func (l *leader) leave(m *nats.Msg) (any, error) {
	var req proto.LeaveRequest
	if err := proto.Decode(m, &req); err != nil {
		return nil, err
	}
	if _, err := l.s.apply(DeregisterWorkerType, DeregisterWorkerCmd{ID: req.WorkerID, At: time.Now()}); err != nil {
		return nil, err
	}
	l.mu.Lock()
	delete(l.live, req.WorkerID)
	l.mu.Unlock()
	return proto.Empty{}, nil
}

// announce fences the members of a job's older epochs.
func (l *leader) announce(job string, epoch uint64) {
	if err := collective.AnnounceEpoch(collective.NewNATSTransport(l.s.nc), job, epoch); err != nil {
		l.s.log.Warn("announce epoch", "job", job, "err", err)
	}
}

// startScoring puts a training job whose config has scoring data in its
// scoring phase with the final adapter, instead of completing it; its
// members then score through the same fan-out as a scoring job. When the
// leader cannot plan it (the data file is not where it looks), the job
// completes anyway: training succeeded, and note says why nothing was
// scored.
func (l *leader) startScoring(j *Job, rep proto.CompleteReport) (started bool, note string, err error) {
	cfg, err := configs.Parse([]byte(j.ConfigYAML), "job.yaml", nil)
	if err != nil || cfg.Scoring.Data == "" {
		return false, "", nil
	}
	spec, err := PlanScore(cfg, rep.Adapter)
	if err != nil {
		l.s.log.Warn("trained, but cannot score", "job", j.ID, "err", err)
		return false, "not scored: " + err.Error(), nil
	}
	if _, err := l.s.apply(ScoreStartType, ScoreStartCmd{Job: j.ID, Step: rep.Step, Spec: spec, At: time.Now()}); err != nil {
		return true, "", conflict(err)
	}
	l.s.log.Info("training done, scoring", "job", j.ID, "adapter", rep.Adapter, "batches", spec.Batches)
	for _, m := range j.Epoch.Members {
		_ = l.s.nc.Publish(proto.WakeSubject(m), nil)
	}
	return true, "", nil
}
