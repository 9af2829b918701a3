package coordinator

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/herdml/herd/internal/proto"
)

// MessageType is the first byte of every raft log entry the FSM applies:
// entries are [type byte][JSON payload]. Numbers are append-only: never
// reuse or renumber one. A type with IgnoreUnknownTypeFlag set may be
// skipped by a coordinator that does not know it (rolling upgrades); an
// unknown type without it stops the FSM (panic), because applying less than
// the leader did would silently diverge.
type MessageType uint8

// Commands. The scoring fan-out (issue 8) took 9-11.
const (
	RegisterWorkerType   MessageType = 0
	DeregisterWorkerType MessageType = 1
	SubmitJobType        MessageType = 2
	FormEpochType        MessageType = 3
	StepStatsType        MessageType = 4
	CheckpointType       MessageType = 5
	JobStatusType        MessageType = 6
	WorkerFailureType    MessageType = 7
	ResumeJobType        MessageType = 8
	ScoreStartType       MessageType = 9
	ScoreProgressType    MessageType = 10
	ScoreFinishType      MessageType = 11
)

// IgnoreUnknownTypeFlag marks a command that older coordinators may skip.
const IgnoreUnknownTypeFlag MessageType = 128

func (t MessageType) String() string {
	switch t &^ IgnoreUnknownTypeFlag {
	case RegisterWorkerType:
		return "register-worker"
	case DeregisterWorkerType:
		return "deregister-worker"
	case SubmitJobType:
		return "submit-job"
	case FormEpochType:
		return "form-epoch"
	case StepStatsType:
		return "step-stats"
	case CheckpointType:
		return "checkpoint"
	case JobStatusType:
		return "job-status"
	case WorkerFailureType:
		return "worker-failure"
	case ResumeJobType:
		return "resume-job"
	case ScoreStartType:
		return "score-start"
	case ScoreProgressType:
		return "score-progress"
	case ScoreFinishType:
		return "score-finish"
	}
	return fmt.Sprintf("type-%d", uint8(t))
}

// Every command carries At, the leader's clock when it proposed it: Apply
// never reads a clock.

// RegisterWorkerCmd registers (or re-registers) a worker.
type RegisterWorkerCmd struct {
	Worker proto.RegisterRequest `json:"worker"`
	At     time.Time             `json:"at"`
}

// DeregisterWorkerCmd removes a worker that left cleanly.
type DeregisterWorkerCmd struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
}

// SubmitJobCmd queues a job. The FSM names it job-<seq>.
type SubmitJobCmd struct {
	// RequestID dedupes retried submissions: a job with the same request id
	// is returned instead of a new one.
	RequestID  string `json:"request_id,omitempty"`
	Name       string `json:"name"`
	ConfigYAML string `json:"config_yaml"`
	OutputDir  string `json:"output_dir"`
	// GlobalBatch: training.global_batch_size, or micro_batch_size ×
	// grad_accum × the workers the job will start with, computed by the
	// leader at submission.
	GlobalBatch int   `json:"global_batch"`
	Workers     int   `json:"workers"`
	MinWorkers  int   `json:"min_workers"`
	MaxWorkers  int   `json:"max_workers"`
	MaxRestarts int   `json:"max_restarts"`
	HeartbeatMs int64 `json:"heartbeat_ms"`
	TimeoutMs   int64 `json:"timeout_ms"`
	// TraceParent is the W3C traceparent of the job span: every span of
	// the job, on any leader and worker, joins that trace.
	TraceParent string `json:"traceparent,omitempty"`
	// Kind is proto.KindScore for a scoring job ("" or train otherwise);
	// Score is then its plan.
	Kind  string     `json:"kind,omitempty"`
	Score *ScoreSpec `json:"score,omitempty"`
	At    time.Time  `json:"at"`
}

// ScoreSpec is what the leader fixes when a job's scoring phase starts:
// the data, the adapter, where the outputs go and the plan's identity.
type ScoreSpec struct {
	Data        string `json:"data"`
	Adapter     string `json:"adapter,omitempty"`
	Out         string `json:"out"`
	Task        string `json:"task"`
	BatchSize   int    `json:"batch_size"`
	Fingerprint string `json:"fingerprint"`
	Batches     int    `json:"batches"`
	Rows        int    `json:"rows"`
}

// ScoreStartCmd puts a training job whose last step is taken in its
// scoring phase (its config has scoring data): the job stays running, its
// members score with the final adapter (Spec.Adapter).
type ScoreStartCmd struct {
	Job  string    `json:"job"`
	Step int       `json:"step"`
	Spec ScoreSpec `json:"spec"`
	At   time.Time `json:"at"`
}

// ScoreLeaseRec is a batch leased to a worker until Expires.
type ScoreLeaseRec struct {
	Batch   int       `json:"batch"`
	Worker  string    `json:"worker"`
	Expires time.Time `json:"expires"`
}

// ScoreProgressCmd records, grouped, what the leader did to a scoring job
// since its last record: leases issued and released, and batches accepted.
// The leader writes it from its flush loop, never from a request handler,
// and only after Merger.Flush has put the accepted batches in the spool: a
// batch recorded as accepted is never scored again.
type ScoreProgressCmd struct {
	Job      string          `json:"job"`
	Leases   []ScoreLeaseRec `json:"leases,omitempty"`
	Released []int           `json:"released,omitempty"`
	Accepted []int           `json:"accepted,omitempty"`
	// Rows are the rows of the Accepted batches.
	Rows int64 `json:"rows,omitempty"`
	// Retried counts leases lost (Released), each to be issued again.
	Retried    int       `json:"retried,omitempty"`
	Duplicates int       `json:"duplicates,omitempty"`
	At         time.Time `json:"at"`
}

// ScoreFinishCmd completes a scoring phase once predictions.jsonl and
// metrics.json are written: the job becomes completed with its metrics.
type ScoreFinishCmd struct {
	Job     string              `json:"job"`
	Metrics map[string]*float64 `json:"metrics"`
	Rows    int64               `json:"rows"`
	Errors  int64               `json:"errors"`
	At      time.Time           `json:"at"`
}

// FormEpochCmd starts a new group epoch of a job (or, with no members, puts
// it in status waiting).
type FormEpochCmd struct {
	Job string `json:"job"`
	// Epoch must be the job's current epoch + 1.
	Epoch   uint64   `json:"epoch"`
	Members []string `json:"members"`
	// Restart: the re-formation follows a failure and counts against
	// cluster.max_restarts.
	Restart bool   `json:"restart"`
	Reason  string `json:"reason"`
	// TraceParent is the group.epoch span's: the members' spans of the
	// epoch are its children.
	TraceParent string    `json:"traceparent,omitempty"`
	At          time.Time `json:"at"`
}

// StepStatsCmd records optimizer steps reported by a group's rank 0 (the
// leader batches them).
type StepStatsCmd struct {
	Job   string           `json:"job"`
	Stats []proto.StepStat `json:"stats"`
	At    time.Time        `json:"at"`
}

// CheckpointCmd records a saved checkpoint.
type CheckpointCmd struct {
	Job  string `json:"job"`
	Step int    `json:"step"`
	Path string `json:"path"`
	// Paused: taken to pause the job, which becomes paused.
	Paused bool      `json:"paused,omitempty"`
	At     time.Time `json:"at"`
}

// JobStatusCmd moves a job to a new status: waiting, completed, failed or
// cancelled.
type JobStatusCmd struct {
	Job     string    `json:"job"`
	Status  string    `json:"status"`
	Error   string    `json:"error,omitempty"`
	Adapter string    `json:"adapter,omitempty"`
	Step    int       `json:"step,omitempty"`
	Message string    `json:"message,omitempty"`
	At      time.Time `json:"at"`
}

// WorkerFailureCmd counts a failure of a worker; with ExcludedUntil set the
// worker starts a cool-down and its count restarts.
type WorkerFailureCmd struct {
	Worker        string    `json:"worker"`
	Job           string    `json:"job,omitempty"`
	Error         string    `json:"error"`
	ExcludedUntil time.Time `json:"excluded_until,omitzero"`
	At            time.Time `json:"at"`
}

// ResumeJobCmd puts a paused (or waiting) job back in the queue.
type ResumeJobCmd struct {
	Job string    `json:"job"`
	At  time.Time `json:"at"`
}

// Encode returns the log entry of a command: [type][JSON payload].
func Encode(t MessageType, cmd any) ([]byte, error) {
	payload, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("coordinator: encode %s: %w", t, err)
	}
	return append([]byte{byte(t)}, payload...), nil
}
