package proto

import (
	"fmt"
	"regexp"
	"time"
)

// Worker states, as a worker reports them in its heartbeats.
const (
	// WorkerIdle: no job.
	WorkerIdle = "idle"
	// WorkerLoading: loading the job's model and data.
	WorkerLoading = "loading"
	// WorkerSyncing: joining a group epoch and synchronising state.
	WorkerSyncing = "syncing"
	// WorkerTraining: taking optimizer steps in a group epoch.
	WorkerTraining = "training"
	// WorkerFailed: its group epoch failed; it waits for the next epoch.
	WorkerFailed = "failed"
	// WorkerFinished: it took the job's last step; it waits for the job to
	// be marked completed.
	WorkerFinished = "finished"
)

// RegisterRequest registers a worker (or re-registers it after the
// coordinator forgot it). A process driving several devices registers one
// worker per device.
type RegisterRequest struct {
	// ID names the worker: letters, digits, '-' and '_' (ValidID). It is
	// a NATS subject token.
	ID     string `json:"id"`
	Host   string `json:"host"`
	Device string `json:"device"` // cpu, cuda:0, ...
	PID    int    `json:"pid"`
}

// RegisterResult acknowledges a registration.
type RegisterResult struct {
	// HeartbeatMs is the interval an idle worker heartbeats at; a worker in
	// a job uses the job's cluster.heartbeat.
	HeartbeatMs int64 `json:"heartbeat_ms"`
}

// Heartbeat tells the leader a worker is alive and what it is doing.
type Heartbeat struct {
	WorkerID string `json:"worker_id"`
	// IntervalMs is the interval the worker heartbeats at: the leader
	// declares it dead after LivenessIntervals intervals of silence.
	IntervalMs int64  `json:"interval_ms"`
	Job        string `json:"job,omitempty"`
	Epoch      uint64 `json:"epoch,omitempty"`
	State      string `json:"state"`
	// Step is the optimizer steps its engine has taken.
	Step  int    `json:"step"`
	Error string `json:"error,omitempty"`
}

// LivenessIntervals and LivenessSlack: the leader declares a worker dead
// after LivenessIntervals heartbeat intervals plus LivenessSlack of silence
// (the slack covers a process busy loading libtorch and a model on a loaded
// machine).
const (
	LivenessIntervals = 3
	LivenessSlack     = time.Second
)

// HeartbeatResult answers a heartbeat.
type HeartbeatResult struct {
	// Unknown is set when the leader has no registration for the worker:
	// it must register again.
	Unknown bool `json:"unknown,omitempty"`
	// Assignment is the worker's current job and group epoch; nil when it
	// is in no group.
	Assignment *Assignment `json:"assignment,omitempty"`
	// JobStatus is the status of the job the heartbeat named (Heartbeat.Job),
	// "" when the coordinator has no such job: a worker keeps its loaded
	// model while the job is active (it may be put back in a group) and
	// frees it otherwise.
	JobStatus string `json:"job_status,omitempty"`
}

// Assignment is a worker's place in a job: the group epoch, its rank and the
// job's settings that every member must agree on.
type Assignment struct {
	Job string `json:"job"`
	// Status is the job's status: running (train), paused (checkpoint and
	// stop), or a terminal one (stop and free the model).
	Status     string `json:"status"`
	ConfigYAML string `json:"config_yaml"`
	// GlobalBatch is the examples per optimizer step, fixed for the job.
	GlobalBatch int    `json:"global_batch"`
	Epoch       uint64 `json:"epoch"`
	Rank        int    `json:"rank"`
	World       int    `json:"world"`
	// Members are the worker ids of the epoch by rank.
	Members []string `json:"members"`
	// Checkpoint is the latest recorded checkpoint; members whose state is
	// older and find no member with newer state restore from it.
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`
	// Score is set while the job is in its scoring phase: the worker scores
	// batches of it instead of training.
	Score *ScoreAssignment `json:"score,omitempty"`
}

// Group is the collective group name of a job (its id: one subject token).
func (a *Assignment) Group() string { return a.Job }

// StepReport carries one optimizer step's statistics from rank 0.
type StepReport struct {
	WorkerID string   `json:"worker_id"`
	Job      string   `json:"job"`
	Epoch    uint64   `json:"epoch"`
	Stat     StepStat `json:"stat"`
}

// CheckpointReport records a checkpoint rank 0 saved.
type CheckpointReport struct {
	WorkerID string `json:"worker_id"`
	Job      string `json:"job"`
	Epoch    uint64 `json:"epoch"`
	Step     int    `json:"step"`
	Path     string `json:"path"`
	// Paused is set when the checkpoint was taken to pause the job.
	Paused bool `json:"paused,omitempty"`
}

// FailureReport tells the leader a worker's group epoch failed.
type FailureReport struct {
	WorkerID string `json:"worker_id"`
	Job      string `json:"job"`
	Epoch    uint64 `json:"epoch"`
	Error    string `json:"error"`
	// Fatal: the job cannot run anywhere (bad config, missing model or
	// data); the leader fails the job.
	Fatal bool `json:"fatal,omitempty"`
	// Culprit: this worker itself failed (its engine returned an error),
	// as opposed to a peer's failure it observed; culprits are counted
	// towards the cool-down.
	Culprit bool `json:"culprit,omitempty"`
}

// CompleteReport says the job's last step is taken and its final
// checkpoint saved.
type CompleteReport struct {
	WorkerID string  `json:"worker_id"`
	Job      string  `json:"job"`
	Epoch    uint64  `json:"epoch"`
	Step     int     `json:"step"`
	Adapter  string  `json:"adapter"`
	Loss     float64 `json:"loss"`
}

// LeaveRequest deregisters a worker shutting down cleanly.
type LeaveRequest struct {
	WorkerID string `json:"worker_id"`
}

// Empty is the result of requests that return nothing.
type Empty struct{}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)

// ValidID checks a worker or coordinator id: 1 to 128 letters, digits, '-'
// and '_', starting with a letter or digit.
func ValidID(id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("id %q: want 1-128 letters, digits, '-' or '_', starting with a letter or digit", id)
	}
	return nil
}
