package coordinator

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/herdml/herd/internal/proto"
)

// ErrRejected wraps the error a command's apply returns when the command no
// longer fits the state (an epoch already superseded, an unknown job): the
// log entry is applied as a no-op on every coordinator alike.
var ErrRejected = errors.New("coordinator: command rejected")

// FSM is the raft state machine. Apply is deterministic: it reads no clock,
// no randomness and does no I/O; the leader stamps times into commands.
type FSM struct {
	mu    sync.RWMutex
	state *State
	index uint64 // raft index of the last applied entry
	log   *slog.Logger
	// onApply, when set, is called after each apply with the new state
	// (outside the lock); the server uses it to wake waiters.
	onApply func()
}

// NewFSM returns an FSM holding an empty state.
func NewFSM(log *slog.Logger) *FSM {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &FSM{state: NewState(), log: log}
}

// State returns the current state (immutable; see State).
func (f *FSM) State() *State {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state
}

// Index returns the raft index of the last applied entry.
func (f *FSM) Index() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.index
}

type applyFunc func(f *FSM, s *State, payload []byte) (any, error)

// appliers is the dispatch table: one applyX per MessageType.
var appliers = map[MessageType]applyFunc{
	RegisterWorkerType:   applyRegisterWorker,
	DeregisterWorkerType: applyDeregisterWorker,
	SubmitJobType:        applySubmitJob,
	FormEpochType:        applyFormEpoch,
	StepStatsType:        applyStepStats,
	CheckpointType:       applyCheckpoint,
	JobStatusType:        applyJobStatus,
	WorkerFailureType:    applyWorkerFailure,
	ResumeJobType:        applyResumeJob,
	ScoreStartType:       applyScoreStart,
	ScoreProgressType:    applyScoreProgress,
	ScoreFinishType:      applyScoreFinish,
}

// Apply implements raft.FSM. It returns the command's result or an error
// (wrapping ErrRejected for a command that no longer fits the state).
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	res := f.applyBytes(l.Index, l.Data)
	if f.onApply != nil {
		f.onApply()
	}
	return res
}

func (f *FSM) applyBytes(index uint64, data []byte) any {
	if len(data) == 0 {
		panic(fmt.Sprintf("coordinator: empty raft log entry at index %d", index))
	}
	t := MessageType(data[0])
	fn, ok := appliers[t]
	if !ok {
		if t&IgnoreUnknownTypeFlag != 0 {
			f.log.Warn("ignoring unknown raft command", "type", uint8(t), "index", index)
			return nil
		}
		panic(fmt.Sprintf("coordinator: unknown raft command type %d at index %d", t, index))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	next := f.state.clone()
	res, err := fn(f, next, data[1:])
	f.index = index
	if err != nil {
		return err
	}
	f.state = next
	return res
}

// decode unmarshals a payload; a known command that does not decode means a
// corrupt log, and diverging silently would be worse than stopping.
func decode[T any](t MessageType, payload []byte) *T {
	var v T
	if err := json.Unmarshal(payload, &v); err != nil {
		panic(fmt.Sprintf("coordinator: undecodable %s command: %v", t, err))
	}
	return &v
}

func rejectf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRejected, fmt.Sprintf(format, args...))
}

func applyRegisterWorker(_ *FSM, s *State, p []byte) (any, error) {
	c := decode[RegisterWorkerCmd](RegisterWorkerType, p)
	w := &Worker{ID: c.Worker.ID, Host: c.Worker.Host, Device: c.Worker.Device, PID: c.Worker.PID, RegisteredAt: c.At}
	if old, ok := s.Workers[w.ID]; ok {
		w.Failures, w.ExcludedUntil = old.Failures, old.ExcludedUntil
	}
	s.Workers[w.ID] = w
	return nil, nil
}

func applyDeregisterWorker(_ *FSM, s *State, p []byte) (any, error) {
	c := decode[DeregisterWorkerCmd](DeregisterWorkerType, p)
	delete(s.Workers, c.ID)
	return nil, nil
}

func applySubmitJob(_ *FSM, s *State, p []byte) (any, error) {
	c := decode[SubmitJobCmd](SubmitJobType, p)
	if c.RequestID != "" {
		for _, j := range s.Jobs {
			if j.RequestID == c.RequestID {
				return j.ID, nil
			}
		}
	}
	s.JobSeq++
	j := &Job{
		ID: fmt.Sprintf("job-%d", s.JobSeq), RequestID: c.RequestID, Name: c.Name, Status: proto.StatusQueued,
		ConfigYAML: c.ConfigYAML, OutputDir: c.OutputDir, GlobalBatch: c.GlobalBatch,
		Workers: c.Workers, MinWorkers: c.MinWorkers, MaxWorkers: c.MaxWorkers, MaxRestarts: c.MaxRestarts,
		HeartbeatMs: c.HeartbeatMs, TimeoutMs: c.TimeoutMs, TraceParent: c.TraceParent, SubmittedAt: c.At, Kind: c.Kind,
	}
	if c.Kind == proto.KindScore {
		if c.Score == nil {
			return nil, rejectf("submit: a scoring job without a plan")
		}
		j.Score = &ScoreState{ScoreSpec: *c.Score, StartedAt: c.At}
		j.event(c.At, fmt.Sprintf("submitted scoring job %s: %d rows of %s in %d batches, workers %d (min %d, max %d)",
			c.Name, c.Score.Rows, c.Score.Data, c.Score.Batches, c.Workers, c.MinWorkers, c.MaxWorkers))
	} else {
		j.event(c.At, fmt.Sprintf("submitted %s: global batch %d, workers %d (min %d, max %d)", c.Name, c.GlobalBatch, c.Workers, c.MinWorkers, c.MaxWorkers))
	}
	s.Jobs[j.ID] = j
	return j.ID, nil
}

func applyFormEpoch(_ *FSM, s *State, p []byte) (any, error) {
	c := decode[FormEpochCmd](FormEpochType, p)
	old, ok := s.Jobs[c.Job]
	switch {
	case !ok:
		return nil, rejectf("form epoch: no job %s", c.Job)
	case !old.Active():
		return nil, rejectf("form epoch: job %s is %s", c.Job, old.Status)
	case c.Epoch != old.Epoch.Number+1:
		return nil, rejectf("form epoch %d of %s: current epoch is %d", c.Epoch, c.Job, old.Epoch.Number)
	case len(c.Members) == 0:
		return nil, rejectf("form epoch %d of %s: no members", c.Epoch, c.Job)
	}
	j := copyJob(old)
	j.Epoch = GroupEpoch{Number: c.Epoch, Members: slices.Clone(c.Members), StartStep: j.Step, FormedAt: c.At, TraceParent: c.TraceParent}
	if j.StartedAt.IsZero() {
		j.StartedAt = c.At
	}
	j.Status = proto.StatusRunning
	j.WaitingSince = time.Time{}
	if c.Restart {
		j.Restarts++
	}
	msg := fmt.Sprintf("group epoch %d: world %d [%s] at step %d", c.Epoch, len(c.Members), strings.Join(c.Members, " "), j.Step)
	if c.Reason != "" {
		msg += ": " + c.Reason
	}
	j.event(c.At, msg)
	s.Jobs[j.ID] = j
	return nil, nil
}

func applyStepStats(_ *FSM, s *State, p []byte) (any, error) {
	c := decode[StepStatsCmd](StepStatsType, p)
	old, ok := s.Jobs[c.Job]
	if !ok {
		return nil, rejectf("step stats: no job %s", c.Job)
	}
	j := copyJob(old)
	for _, st := range c.Stats {
		st := st
		if !proto.Terminal(j.Status) {
			j.Step, j.TotalSteps, j.Loss = st.Step, st.TotalSteps, st.Loss
			j.TokensPerSec, j.StepMs = st.TokensPerSec, st.StepMs
		}
		j.addLog(c.At, proto.LogEntry{Kind: "step", Step: &st})
	}
	s.Jobs[j.ID] = j
	return nil, nil
}

func applyCheckpoint(_ *FSM, s *State, p []byte) (any, error) {
	c := decode[CheckpointCmd](CheckpointType, p)
	old, ok := s.Jobs[c.Job]
	if !ok {
		return nil, rejectf("checkpoint: no job %s", c.Job)
	}
	j := copyJob(old)
	j.Checkpoints = slices.DeleteFunc(j.Checkpoints, func(cp proto.Checkpoint) bool { return cp.Step == c.Step })
	j.Checkpoints = append(j.Checkpoints, proto.Checkpoint{Step: c.Step, Path: c.Path, Time: c.At})
	if n := len(j.Checkpoints); n > MaxCheckpoints {
		j.Checkpoints = slices.Clone(j.Checkpoints[n-MaxCheckpoints:])
	}
	j.event(c.At, fmt.Sprintf("checkpoint at step %d: %s", c.Step, c.Path))
	if c.Paused && j.Active() {
		j.Status = proto.StatusPaused
		j.event(c.At, fmt.Sprintf("paused at step %d", c.Step))
	}
	s.Jobs[j.ID] = j
	return nil, nil
}

func applyJobStatus(_ *FSM, s *State, p []byte) (any, error) {
	c := decode[JobStatusCmd](JobStatusType, p)
	old, ok := s.Jobs[c.Job]
	if !ok {
		return nil, rejectf("status: no job %s", c.Job)
	}
	if proto.Terminal(old.Status) {
		return nil, rejectf("status: job %s is already %s", c.Job, old.Status)
	}
	j := copyJob(old)
	switch c.Status {
	case proto.StatusWaiting:
		if j.Status != proto.StatusWaiting {
			j.WaitingSince = c.At
		}
	case proto.StatusCompleted:
		j.Adapter = c.Adapter
		if c.Step > 0 {
			j.Step = c.Step
		}
		j.EndedAt = c.At
	case proto.StatusFailed, proto.StatusCancelled:
		j.EndedAt = c.At
	case proto.StatusPaused:
	default:
		return nil, rejectf("status: %q is not a status a command sets", c.Status)
	}
	j.Status = c.Status
	j.Error = c.Error
	msg := c.Status
	if c.Message != "" {
		msg += ": " + c.Message
	}
	if c.Error != "" {
		msg += ": " + c.Error
	}
	j.event(c.At, msg)
	s.Jobs[j.ID] = j
	return nil, nil
}

func applyWorkerFailure(_ *FSM, s *State, p []byte) (any, error) {
	c := decode[WorkerFailureCmd](WorkerFailureType, p)
	if old, ok := s.Workers[c.Worker]; ok {
		w := *old
		if !c.ExcludedUntil.IsZero() {
			w.Failures, w.ExcludedUntil = 0, c.ExcludedUntil
		} else {
			w.Failures++
		}
		s.Workers[w.ID] = &w
	}
	if old, ok := s.Jobs[c.Job]; ok {
		j := copyJob(old)
		msg := fmt.Sprintf("worker %s failed: %s", c.Worker, c.Error)
		if !c.ExcludedUntil.IsZero() {
			msg += fmt.Sprintf(" (excluded until %s after repeated failures)", c.ExcludedUntil.UTC().Format(time.RFC3339))
		}
		j.event(c.At, msg)
		s.Jobs[j.ID] = j
	}
	return nil, nil
}

func applyResumeJob(_ *FSM, s *State, p []byte) (any, error) {
	c := decode[ResumeJobCmd](ResumeJobType, p)
	old, ok := s.Jobs[c.Job]
	if !ok {
		return nil, rejectf("resume: no job %s", c.Job)
	}
	if old.Status != proto.StatusPaused && old.Status != proto.StatusWaiting && old.Status != proto.StatusRunning {
		return nil, rejectf("resume: job %s is %s", c.Job, old.Status)
	}
	j := copyJob(old)
	j.Status, j.Error, j.WaitingSince = proto.StatusQueued, "", time.Time{}
	j.event(c.At, "resumed")
	s.Jobs[j.ID] = j
	return nil, nil
}

func applyScoreStart(_ *FSM, s *State, p []byte) (any, error) {
	c := decode[ScoreStartCmd](ScoreStartType, p)
	old, ok := s.Jobs[c.Job]
	switch {
	case !ok:
		return nil, rejectf("score start: no job %s", c.Job)
	case !old.Active():
		return nil, rejectf("score start: job %s is %s", c.Job, old.Status)
	case old.Score != nil:
		return nil, rejectf("score start: job %s already has a scoring phase", c.Job)
	}
	j := copyJob(old)
	j.Score = &ScoreState{ScoreSpec: c.Spec, StartedAt: c.At}
	j.Adapter = c.Spec.Adapter
	if c.Step > 0 {
		j.Step = c.Step
	}
	j.event(c.At, fmt.Sprintf("training done at step %d, adapter %s; scoring %d rows of %s in %d batches", j.Step, c.Spec.Adapter, c.Spec.Rows, c.Spec.Data, c.Spec.Batches))
	s.Jobs[j.ID] = j
	return nil, nil
}

func applyScoreProgress(_ *FSM, s *State, p []byte) (any, error) {
	c := decode[ScoreProgressCmd](ScoreProgressType, p)
	old, ok := s.Jobs[c.Job]
	switch {
	case !ok:
		return nil, rejectf("score progress: no job %s", c.Job)
	case !old.Scoring():
		return nil, rejectf("score progress: job %s has no scoring phase in progress", c.Job)
	}
	j := copyJob(old)
	sc := j.Score
	n := sc.Batches
	done := make(map[int]bool, len(sc.Accepted)+len(c.Accepted))
	for _, b := range sc.Accepted {
		done[b] = true
	}
	acc := slices.Clone(sc.Accepted)
	for _, b := range c.Accepted {
		if b >= 0 && b < n && !done[b] {
			done[b] = true
			acc = append(acc, b)
		}
	}
	slices.Sort(acc)
	sc.Accepted = acc
	sc.AcceptedRows += c.Rows
	// A batch has at most one recorded lease: the newest. Released and
	// accepted batches lose theirs.
	leases := map[int]ScoreLeaseRec{}
	for _, l := range sc.Leases {
		leases[l.Batch] = l
	}
	for _, b := range c.Released {
		delete(leases, b)
	}
	for _, l := range c.Leases {
		if l.Batch >= 0 && l.Batch < n {
			leases[l.Batch] = l
		}
	}
	sc.Leases = nil
	for _, b := range slices.Sorted(maps.Keys(leases)) {
		if !done[b] {
			sc.Leases = append(sc.Leases, leases[b])
		}
	}
	sc.Retried += c.Retried
	sc.Duplicates += c.Duplicates
	s.Jobs[j.ID] = j
	return nil, nil
}

func applyScoreFinish(_ *FSM, s *State, p []byte) (any, error) {
	c := decode[ScoreFinishCmd](ScoreFinishType, p)
	old, ok := s.Jobs[c.Job]
	switch {
	case !ok:
		return nil, rejectf("score finish: no job %s", c.Job)
	case !old.Scoring() || !old.Active():
		return nil, rejectf("score finish: job %s has no scoring phase in progress", c.Job)
	}
	j := copyJob(old)
	sc := j.Score
	sc.Done, sc.Metrics, sc.Errors, sc.Leases = true, maps.Clone(c.Metrics), c.Errors, nil
	j.Status, j.EndedAt, j.Error = proto.StatusCompleted, c.At, ""
	parts := make([]string, 0, len(c.Metrics))
	for _, k := range slices.Sorted(maps.Keys(c.Metrics)) {
		if v := c.Metrics[k]; v != nil {
			parts = append(parts, fmt.Sprintf("%s %.6g", k, *v))
		} else {
			parts = append(parts, k+" null")
		}
	}
	j.event(c.At, fmt.Sprintf("completed: scored %d rows (%d with errors) into %s: %s", c.Rows, c.Errors, sc.Out, strings.Join(parts, ", ")))
	s.Jobs[j.ID] = j
	return nil, nil
}

// Snapshot implements raft.FSM: it captures the current state pointer;
// Persist writes it out while Apply goes on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &fsmSnapshot{state: f.state}, nil
}

// Restore implements raft.FSM: it reads a snapshot into a fresh state and
// swaps it in.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	s, err := ReadSnapshot(rc, f.log)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.state = s
	f.mu.Unlock()
	if f.onApply != nil {
		f.onApply()
	}
	return nil
}
