package coordinator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"

	"github.com/herdml/herd/collective"
	"github.com/herdml/herd/coordinator/scheduler"
	"github.com/herdml/herd/internal/natsutil"
	"github.com/herdml/herd/internal/proto"
	"github.com/herdml/herd/telemetry"
)

// leaderLoop runs leader duties while this node leads: it waits for
// leadership, then serves until leadership is lost or the server closes.
func (s *Server) leaderLoop() {
	ch := s.raft.LeaderCh()
	for {
		select {
		case <-s.ctx.Done():
			return
		case isLeader := <-ch:
			if !isLeader {
				continue
			}
			ctx, cancel := context.WithCancel(s.ctx)
			done := make(chan struct{})
			go func() {
				defer close(done)
				s.lead(ctx)
			}()
			// Leadership lasts until a false arrives (or we close).
		wait:
			for {
				select {
				case <-s.ctx.Done():
					break wait
				case v := <-ch:
					if !v {
						break wait
					}
				}
			}
			cancel()
			<-done
			s.log.Info("leadership lost")
		}
	}
}

// leader is the leader's in-memory view: worker liveness and buffered step
// statistics. It is rebuilt from heartbeats by each new leader.
type leader struct {
	s     *Server
	since time.Time

	mu    sync.Mutex
	live  map[string]*liveness
	stats map[string][]proto.StepStat // job → unflushed steps

	scores scoreRuns
	// scoreDue is signalled when a scoring plan has every batch accepted:
	// the leader loop finishes it at once instead of at the next flush.
	scoreDue chan struct{}
}

type liveness struct {
	last time.Time
	hb   proto.Heartbeat
}

// lead serves as leader until ctx ends.
func (s *Server) lead(ctx context.Context) {
	// Serve only once the FSM has applied the whole log; retry while this
	// node still leads.
	for {
		err := s.raft.Barrier(s.cfg.ApplyTimeout).Error()
		if err == nil {
			break
		}
		s.log.Warn("leader barrier failed", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.cfg.Tick):
		}
	}
	l := &leader{s: s, since: time.Now(), live: map[string]*liveness{}, stats: map[string][]proto.StepStat{}}
	l.scores.runs = map[string]*scoreRun{}
	l.scoreDue = make(chan struct{}, 1)
	s.log.Info("leading", "index", s.fsm.Index())
	handlers := map[string]nats.MsgHandler{
		proto.SubjectSubmit:      l.handle(l.submit),
		proto.SubjectJobs:        l.handle(l.jobs),
		proto.SubjectStatus:      l.handle(l.status),
		proto.SubjectCancel:      l.handle(l.cancelJob),
		proto.SubjectLogs:        l.handle(l.logs),
		proto.SubjectAddVoter:    l.handle(l.addVoter),
		proto.SubjectRemoveVoter: l.handle(l.removeVoter),
		proto.SubjectRegister:    l.handle(l.register),
		proto.SubjectHeartbeat:   l.handle(l.heartbeat),
		proto.SubjectStep:        l.handle(l.step),
		proto.SubjectCheckpoint:  l.handle(l.checkpoint),
		proto.SubjectFailure:     l.handle(l.failure),
		proto.SubjectComplete:    l.handle(l.complete),
		proto.SubjectLeave:       l.handle(l.leave),
		proto.SubjectScoreLease:  l.handle(l.scoreLeaseReq),
		proto.SubjectScoreResult: l.handle(l.scoreResult),
	}
	var subs []*nats.Subscription
	defer func() {
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
	}()
	for _, subj := range slices.Sorted(maps.Keys(handlers)) {
		sub, err := s.nc.QueueSubscribe(subj, proto.LeaderQueue, handlers[subj])
		if err != nil {
			s.log.Error("leader subscribe", "subject", subj, "err", err)
			return
		}
		if err := sub.SetPendingLimits(natsutil.PendingMsgsLimit, natsutil.PendingBytesLimit); err != nil {
			s.log.Warn("pending limits", "err", err)
		}
		subs = append(subs, sub)
	}
	if err := s.nc.Flush(); err != nil {
		s.log.Warn("flush subscriptions", "err", err)
	}
	tick := time.NewTicker(s.cfg.Tick)
	defer tick.Stop()
	flush := time.NewTicker(s.cfg.StatsFlush)
	defer flush.Stop()
	for {
		select {
		case <-ctx.Done():
			l.flushStats()
			return
		case <-tick.C:
			l.schedule()
		case <-s.changed:
			l.schedule()
		case <-flush.C:
			l.flushStats()
			l.flushScores()
		case <-l.scoreDue:
			l.flushScores()
		}
	}
}

type handlerFunc func(m *nats.Msg) (any, error)

// withHeader is a handler's result whose reply also carries headers (the
// trace context of an assignment).
type withHeader struct {
	res any
	hdr nats.Header
}

// handle wraps a handler with the token check and the reply.
func (l *leader) handle(fn handlerFunc) nats.MsgHandler {
	return func(m *nats.Msg) {
		if perr := proto.CheckToken(m, l.s.cfg.Token); perr != nil {
			_ = proto.Respond(m, nil, perr)
			return
		}
		res, err := fn(m)
		if errors.Is(err, ErrNotLeader) {
			err = &proto.Error{Code: proto.CodeNotLeader, Message: err.Error()}
		}
		var hdr nats.Header
		if wh, ok := res.(withHeader); ok {
			res, hdr = wh.res, wh.hdr
		}
		if err := proto.RespondMsg(m, hdr, res, err); err != nil {
			l.s.log.Debug("respond", "subject", m.Subject, "err", err)
		}
	}
}

// alive reports whether a worker counts as alive now. member says whether
// it is in a running group: a new leader gives members it has not heard
// from yet a grace period before declaring them lost, but does not hand
// such workers new work.
func (l *leader) alive(id string, now time.Time, member bool) bool {
	lv, ok := l.live[id]
	if !ok {
		return member && now.Sub(l.since) < l.grace()
	}
	interval := time.Duration(lv.hb.IntervalMs) * time.Millisecond
	if interval <= 0 {
		interval = l.s.cfg.Heartbeat
	}
	return now.Sub(lv.last) <= proto.LivenessIntervals*interval+proto.LivenessSlack
}

func (l *leader) grace() time.Duration {
	g := proto.LivenessIntervals*l.s.cfg.Heartbeat + proto.LivenessSlack
	for _, j := range l.s.fsm.State().Jobs {
		if j.Active() {
			g = max(g, proto.LivenessIntervals*time.Duration(j.HeartbeatMs)*time.Millisecond+proto.LivenessSlack)
		}
	}
	return g
}

// forget deregisters workers silent for longer than WorkerGC that are in
// no running group.
func (l *leader) forget(st *State, now time.Time) {
	busy := map[string]bool{}
	for _, j := range st.Jobs {
		if j.Status == proto.StatusRunning {
			for _, m := range j.Epoch.Members {
				busy[m] = true
			}
		}
	}
	var gone []string
	l.mu.Lock()
	for id := range st.Workers {
		last := l.since
		if lv, ok := l.live[id]; ok {
			last = lv.last
		}
		if !busy[id] && now.Sub(last) > l.s.cfg.WorkerGC {
			gone = append(gone, id)
			delete(l.live, id)
		}
	}
	l.mu.Unlock()
	for _, id := range gone {
		if _, err := l.s.apply(DeregisterWorkerType, DeregisterWorkerCmd{ID: id, At: now}); err != nil {
			l.s.log.Warn("forget worker", "worker", id, "err", err)
			return
		}
		l.s.log.Info("forgot a silent worker", "worker", id, "silent_for", l.s.cfg.WorkerGC)
	}
}

// schedule runs the scheduler over the current state and applies its
// decisions.
func (l *leader) schedule() {
	now := time.Now()
	st := l.s.fsm.State()
	l.forget(st, now)
	st = l.s.fsm.State()
	v := scheduler.View{Now: now, WaitTimeout: l.s.cfg.WaitTimeout}
	for _, j := range st.JobList() {
		if !j.Active() {
			continue
		}
		v.Jobs = append(v.Jobs, scheduler.Job{ID: j.ID, Status: j.Status, Workers: j.Workers, MinWorkers: j.MinWorkers,
			MaxWorkers: j.MaxWorkers, Epoch: j.Epoch.Number, Members: j.Epoch.Members, Restarts: j.Restarts,
			MaxRestarts: j.MaxRestarts, WaitingSince: j.WaitingSince})
	}
	if len(v.Jobs) == 0 {
		return
	}
	memberOf := map[string]*Job{}
	for _, j := range st.Jobs {
		if j.Status == proto.StatusRunning {
			for _, m := range j.Epoch.Members {
				memberOf[m] = j
			}
		}
	}
	l.mu.Lock()
	for _, w := range st.WorkerList() {
		j, member := memberOf[w.ID]
		sw := scheduler.Worker{ID: w.ID, Alive: l.alive(w.ID, now, member), Excluded: now.Before(w.ExcludedUntil)}
		if member && w.RegisteredAt.After(j.Epoch.FormedAt) {
			sw.Restarted = true
		}
		if lv, ok := l.live[w.ID]; ok && lv.hb.State == proto.WorkerFailed {
			sw.FailedJob, sw.FailedEpoch = lv.hb.Job, lv.hb.Epoch
		}
		v.Workers = append(v.Workers, sw)
	}
	l.mu.Unlock()
	for _, d := range scheduler.Schedule(v) {
		if err := l.decide(st, d, now); err != nil {
			if !errors.Is(err, ErrRejected) {
				l.s.log.Warn("scheduling decision failed", "job", d.Job, "action", d.Action, "err", err)
			}
			return
		}
	}
}

func (l *leader) decide(st *State, d scheduler.Decision, now time.Time) (err error) {
	j := st.Jobs[d.Job]
	// A waiting job gets the same Wait decision every tick: only decisions
	// that change something get a span.
	ctx := context.Background()
	if d.Action != scheduler.Wait || j.Status != proto.StatusWaiting || len(d.Lost) > 0 {
		var span trace.Span
		ctx, span = l.s.cfg.Telemetry.Start(telemetry.WithTraceParent(ctx, j.TraceParent), telemetry.SpanSchedule,
			trace.WithAttributes(telemetry.AttrJob.String(d.Job), telemetry.AttrAction.String(d.Action.String()),
				telemetry.AttrReason.String(d.Reason)))
		defer func() { telemetry.End(span, err) }()
	}
	for _, id := range d.Lost {
		if err := l.countFailure(id, d.Job, "lost from its group (no heartbeat, restarted or excluded)", now); err != nil {
			return err
		}
	}
	switch d.Action {
	case scheduler.Form:
		ectx, span := l.s.cfg.Telemetry.Start(ctx, telemetry.SpanGroupEpoch, trace.WithAttributes(telemetry.AttrJob.String(d.Job),
			telemetry.AttrEpoch.Int64(int64(d.Epoch)), telemetry.AttrWorld.Int(len(d.Members))))
		_, err := l.s.apply(FormEpochType, FormEpochCmd{Job: d.Job, Epoch: d.Epoch, Members: d.Members, Restart: d.Restart, Reason: d.Reason,
			TraceParent: telemetry.TraceParent(ectx), At: now})
		telemetry.End(span, err)
		if err != nil {
			return err
		}
		l.s.cfg.Telemetry.Metrics().Train(d.Job).Workers(ectx, len(d.Members))
		l.s.log.Info("group epoch formed", "job", d.Job, "epoch", d.Epoch, "members", d.Members, "reason", d.Reason)
		// Fence the old epoch's members and wake the new ones.
		if err := collective.AnnounceEpoch(collective.NewNATSTransport(l.s.nc), d.Job, d.Epoch); err != nil {
			l.s.log.Warn("announce epoch", "err", err)
		}
		for _, m := range d.Members {
			_ = l.s.nc.Publish(proto.WakeSubject(m), nil)
		}
	case scheduler.Wait:
		if st.Jobs[d.Job].Status == proto.StatusWaiting {
			return nil
		}
		if _, err := l.s.apply(JobStatusType, JobStatusCmd{Job: d.Job, Status: proto.StatusWaiting, Message: d.Reason, At: now}); err != nil {
			return err
		}
		_ = collective.AnnounceEpoch(collective.NewNATSTransport(l.s.nc), d.Job, st.Jobs[d.Job].Epoch.Number+1)
		l.s.log.Warn("job waiting for workers", "job", d.Job, "reason", d.Reason)
	case scheduler.Fail:
		if _, err := l.s.apply(JobStatusType, JobStatusCmd{Job: d.Job, Status: proto.StatusFailed, Error: d.Reason, At: now}); err != nil {
			return err
		}
		_ = collective.AnnounceEpoch(collective.NewNATSTransport(l.s.nc), d.Job, st.Jobs[d.Job].Epoch.Number+1)
		l.s.log.Error("job failed", "job", d.Job, "reason", d.Reason)
	}
	return nil
}

// countFailure records a failure of a worker, starting a cool-down when it
// reaches the threshold.
func (l *leader) countFailure(id, job, msg string, now time.Time) error {
	cmd := WorkerFailureCmd{Worker: id, Job: job, Error: msg, At: now}
	if w, ok := l.s.fsm.State().Workers[id]; ok && w.Failures+1 >= l.s.cfg.FailureThreshold {
		cmd.ExcludedUntil = now.Add(l.s.cfg.Cooldown)
	}
	_, err := l.s.apply(WorkerFailureType, cmd)
	return err
}

func (l *leader) flushStats() {
	l.mu.Lock()
	pending := l.stats
	l.stats = map[string][]proto.StepStat{}
	l.mu.Unlock()
	now := time.Now()
	for _, job := range slices.Sorted(maps.Keys(pending)) {
		if _, err := l.s.apply(StepStatsType, StepStatsCmd{Job: job, Stats: pending[job], At: now}); err != nil && !errors.Is(err, ErrRejected) {
			l.s.log.Warn("record step stats", "job", job, "err", err)
		}
	}
}

// job returns the job or a not-found error.
func (l *leader) job(id string) (*Job, error) {
	j, ok := l.s.fsm.State().Jobs[id]
	if !ok {
		return nil, &proto.Error{Code: proto.CodeNotFound, Message: fmt.Sprintf("no job %q", id), Hint: "list jobs with `herd jobs`"}
	}
	return j, nil
}

// freeWorkers counts the live workers that are not in a running group and
// not in a cool-down.
func (l *leader) freeWorkers(now time.Time) int {
	st := l.s.fsm.State()
	busy := map[string]bool{}
	for _, j := range st.Jobs {
		if j.Status == proto.StatusRunning {
			for _, m := range j.Epoch.Members {
				busy[m] = true
			}
		}
	}
	n := 0
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, w := range st.Workers {
		if !busy[w.ID] && l.alive(w.ID, now, false) && !now.Before(w.ExcludedUntil) {
			n++
		}
	}
	return n
}
