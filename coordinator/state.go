package coordinator

import (
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/herdml/herd/internal/proto"
)

// State is everything the coordinators agree on through raft. A *State is
// immutable once published by the FSM: Apply builds a new State (maps copied,
// changed records replaced by changed copies), so readers and snapshots hold
// a pointer and need no lock.
type State struct {
	Workers map[string]*Worker
	Jobs    map[string]*Job
	// JobSeq numbers jobs: job ids are "job-<seq>".
	JobSeq uint64
}

// Worker is a registered worker.
type Worker struct {
	ID           string    `json:"id"`
	Host         string    `json:"host"`
	Device       string    `json:"device"`
	PID          int       `json:"pid"`
	RegisteredAt time.Time `json:"registered_at"`
	// Failures counts failures since the last cool-down.
	Failures int `json:"failures"`
	// ExcludedUntil ends the worker's cool-down: the scheduler does not put
	// it in a group before then.
	ExcludedUntil time.Time `json:"excluded_until,omitzero"`
}

// Job is a training job.
type Job struct {
	ID         string `json:"id"`
	RequestID  string `json:"request_id,omitempty"`
	Name       string `json:"name"`
	Status     string `json:"status"`
	Error      string `json:"error,omitempty"`
	ConfigYAML string `json:"config_yaml"`
	OutputDir  string `json:"output_dir"`
	// GlobalBatch is fixed at submission (see SubmitJobCmd).
	GlobalBatch int `json:"global_batch"`
	// Wants, from the cluster section.
	Workers     int `json:"workers"`
	MinWorkers  int `json:"min_workers"`
	MaxWorkers  int `json:"max_workers"`
	MaxRestarts int `json:"max_restarts"`
	// HeartbeatMs and TimeoutMs are cluster.heartbeat and cluster.timeout.
	HeartbeatMs int64 `json:"heartbeat_ms"`
	TimeoutMs   int64 `json:"timeout_ms"`
	// TraceParent is the job span's context (SubmitJobCmd.TraceParent).
	TraceParent string `json:"traceparent,omitempty"`

	SubmittedAt  time.Time `json:"submitted_at"`
	StartedAt    time.Time `json:"started_at,omitzero"`
	EndedAt      time.Time `json:"ended_at,omitzero"`
	WaitingSince time.Time `json:"waiting_since,omitzero"`

	// Epoch is the current (latest) group epoch.
	Epoch GroupEpoch `json:"epoch"`
	// Restarts counts re-formations caused by failures.
	Restarts int `json:"restarts"`

	Step         int     `json:"step"`
	TotalSteps   int     `json:"total_steps"`
	Loss         float64 `json:"loss"`
	TokensPerSec float64 `json:"tokens_per_sec"`
	StepMs       float64 `json:"step_ms"`

	Checkpoints []proto.Checkpoint `json:"checkpoints,omitempty"`
	Adapter     string             `json:"adapter,omitempty"`

	// Log is the job's recent log, at most MaxLogEntries; LogSeq is the
	// Seq of the last entry ever appended.
	Log    []proto.LogEntry `json:"log,omitempty"`
	LogSeq uint64           `json:"log_seq"`

	// Kind is proto.KindScore for a scoring job, "" for training.
	Kind string `json:"kind,omitempty"`
	// Score is the job's scoring phase (a scoring job's whole life, or a
	// training job's after its last step); nil when it has none (yet).
	Score *ScoreState `json:"score,omitempty"`
}

// ScoreState is a scoring phase as raft records it.
type ScoreState struct {
	ScoreSpec
	// Accepted are the batches accepted and flushed to the spool,
	// ascending; AcceptedRows their rows.
	Accepted     []int `json:"accepted,omitempty"`
	AcceptedRows int64 `json:"accepted_rows"`
	// Leases are the batches leased and not yet accepted or released.
	Leases     []ScoreLeaseRec `json:"leases,omitempty"`
	Retried    int             `json:"retried"`
	Duplicates int             `json:"duplicates"`
	StartedAt  time.Time       `json:"started_at"`
	// Done is set by ScoreFinish; Metrics are then the final metrics.
	Done    bool                `json:"done,omitempty"`
	Metrics map[string]*float64 `json:"metrics,omitempty"`
	Errors  int64               `json:"errors,omitempty"`
}

// Scoring reports whether the job is in an unfinished scoring phase.
func (j *Job) Scoring() bool { return j.Score != nil && !j.Score.Done }

// GroupEpoch is one membership of a job's data-parallel group.
type GroupEpoch struct {
	// Number starts at 1 and grows by one per formation.
	Number uint64 `json:"number"`
	// Members are worker ids by rank.
	Members []string `json:"members,omitempty"`
	// StartStep is the job's committed step when the epoch was formed.
	StartStep int       `json:"start_step"`
	FormedAt  time.Time `json:"formed_at,omitzero"`
	// TraceParent is the group.epoch span's context, handed to the members
	// with their assignment.
	TraceParent string `json:"traceparent,omitempty"`
}

// MaxLogEntries bounds a job's log kept in the state.
const MaxLogEntries = 5000

// MaxCheckpoints bounds the checkpoints listed per job (the newest kept).
const MaxCheckpoints = 100

// NewState returns an empty state.
func NewState() *State {
	return &State{Workers: map[string]*Worker{}, Jobs: map[string]*Job{}}
}

// clone returns a shallow copy whose maps may be changed.
func (s *State) clone() *State {
	return &State{Workers: maps.Clone(s.Workers), Jobs: maps.Clone(s.Jobs), JobSeq: s.JobSeq}
}

// JobList returns the jobs ordered by submission (sequence).
func (s *State) JobList() []*Job {
	jobs := slices.Collect(maps.Values(s.Jobs))
	sort.Slice(jobs, func(i, j int) bool {
		if !jobs[i].SubmittedAt.Equal(jobs[j].SubmittedAt) {
			return jobs[i].SubmittedAt.Before(jobs[j].SubmittedAt)
		}
		return jobID(jobs[i].ID) < jobID(jobs[j].ID)
	})
	return jobs
}

// WorkerList returns the workers ordered by id.
func (s *State) WorkerList() []*Worker {
	ws := slices.Collect(maps.Values(s.Workers))
	sort.Slice(ws, func(i, j int) bool { return ws[i].ID < ws[j].ID })
	return ws
}

// LatestCheckpoint returns the job's newest checkpoint, nil if none.
func (j *Job) LatestCheckpoint() *proto.Checkpoint {
	if len(j.Checkpoints) == 0 {
		return nil
	}
	c := j.Checkpoints[len(j.Checkpoints)-1]
	return &c
}

// Active reports whether the job holds or wants workers.
func (j *Job) Active() bool {
	return j.Status == proto.StatusQueued || j.Status == proto.StatusRunning || j.Status == proto.StatusWaiting
}

// copyJob returns a copy of j whose slices may be appended to without
// touching j's.
func copyJob(j *Job) *Job {
	c := *j
	c.Checkpoints = slices.Clip(c.Checkpoints)
	c.Log = slices.Clip(c.Log)
	c.Epoch.Members = slices.Clip(c.Epoch.Members)
	if c.Score != nil {
		sc := *c.Score
		sc.Accepted = slices.Clip(sc.Accepted)
		sc.Leases = slices.Clone(sc.Leases)
		sc.Metrics = maps.Clone(sc.Metrics)
		c.Score = &sc
	}
	return &c
}

func (j *Job) addLog(at time.Time, e proto.LogEntry) {
	j.LogSeq++
	e.Seq, e.Time = j.LogSeq, at
	j.Log = append(j.Log, e)
	if n := len(j.Log); n > MaxLogEntries {
		j.Log = slices.Clone(j.Log[n-MaxLogEntries:])
	}
}

func (j *Job) event(at time.Time, msg string) {
	j.addLog(at, proto.LogEntry{Kind: "event", Message: msg})
}

// Info converts j to the API's view.
func (j *Job) Info(withConfig bool) proto.JobInfo {
	info := proto.JobInfo{
		ID: j.ID, Name: j.Name, Status: j.Status, Error: j.Error,
		SubmittedAt: j.SubmittedAt, StartedAt: j.StartedAt, EndedAt: j.EndedAt,
		GlobalBatch: j.GlobalBatch, Workers: j.Workers, MinWorkers: j.MinWorkers, MaxWorkers: j.MaxWorkers,
		Epoch: j.Epoch.Number, Members: slices.Clone(j.Epoch.Members),
		Step: j.Step, TotalSteps: j.TotalSteps, Loss: j.Loss, TokensPerSec: j.TokensPerSec, StepMs: j.StepMs,
		Restarts: j.Restarts, Checkpoints: slices.Clone(j.Checkpoints), Adapter: j.Adapter, OutputDir: j.OutputDir,
	}
	if withConfig {
		info.ConfigYAML = j.ConfigYAML
	}
	info.Kind = j.Kind
	if info.Kind == "" {
		info.Kind = proto.KindTrain
	}
	if sc := j.Score; sc != nil {
		si := &proto.ScoreInfo{Phase: "scoring", Data: sc.Data, Adapter: sc.Adapter, Out: sc.Out, Fingerprint: sc.Fingerprint,
			RowsTotal: int64(sc.Rows), RowsDone: sc.AcceptedRows, BatchesTotal: sc.Batches, BatchesDone: len(sc.Accepted),
			BatchesInFlight: len(sc.Leases), BatchesRetried: sc.Retried, DuplicatesDropped: sc.Duplicates, Metrics: maps.Clone(sc.Metrics)}
		if sc.Done {
			si.Phase = "done"
		}
		info.Score = si
	}
	return info
}

// jobID extracts the sequence number of "job-<n>" for ordering (0 if none).
func jobID(id string) uint64 {
	var n uint64
	for i := len("job-"); i < len(id); i++ {
		c := id[i]
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + uint64(c-'0')
	}
	return n
}
