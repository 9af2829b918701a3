package proto

import (
	"encoding/json"
	"time"
)

// Job statuses.
const (
	// StatusQueued: submitted, waiting for enough workers to start.
	StatusQueued = "queued"
	// StatusRunning: a group epoch is training it.
	StatusRunning = "running"
	// StatusWaiting: it ran, lost its workers (fewer than min_workers
	// alive) and waits for workers to return, up to the coordinator's wait
	// timeout; it then resumes from its last checkpoint.
	StatusWaiting = "waiting"
	// StatusPaused: stopped after a checkpoint (single-node Ctrl-C);
	// resumed by a SubmitRequest with ResumeJob set (herd train --resume).
	StatusPaused = "paused"
	// StatusCompleted: trained to the last step; Adapter holds the result.
	StatusCompleted = "completed"
	// StatusFailed: a fatal error (bad config on the workers, missing model,
	// restart budget spent, wait timeout); Error says why.
	StatusFailed = "failed"
	// StatusCancelled: cancelled by `herd cancel`.
	StatusCancelled = "cancelled"
)

// Terminal reports whether a job in status s will not run again.
func Terminal(s string) bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusCancelled
}

// SubmitRequest submits a training job.
type SubmitRequest struct {
	// ConfigYAML is the effective run config (configs.Config.YAML), with
	// paths made absolute by the submitter.
	ConfigYAML string `json:"config_yaml"`
	// Name is the run name (run_name), for listings.
	Name string `json:"name"`
	// ResumeJob, when set, resumes that paused or waiting job instead of
	// submitting a new one.
	ResumeJob string `json:"resume_job,omitempty"`
	// RequestID makes the submission idempotent: a second request with the
	// same id returns the job the first one created. Call sets one when it
	// is empty.
	RequestID string `json:"request_id,omitempty"`
	// Score submits a scoring job (KindScore): the config's scoring
	// section over scoring.data (default dataset.eval) with model.path and
	// Adapter ("" scores the base model).
	Score   bool   `json:"score,omitempty"`
	Adapter string `json:"adapter,omitempty"`
	// ScoreOut, with Score, is where predictions.jsonl and metrics.json
	// go; default output_dir/scoring.
	ScoreOut string `json:"score_out,omitempty"`
}

// SubmitResult is the submitted (or resumed) job.
type SubmitResult struct {
	Job JobInfo `json:"job"`
}

// JobsRequest lists jobs.
type JobsRequest struct{}

// JobsResult lists every job, oldest first.
type JobsResult struct {
	Jobs []JobInfo `json:"jobs"`
}

// StatusRequest asks for one job (Job set) or the whole cluster.
type StatusRequest struct {
	Job string `json:"job,omitempty"`
}

// StatusResult is a job's status or the cluster's.
type StatusResult struct {
	Job     *JobInfo     `json:"job,omitempty"`
	Cluster *ClusterInfo `json:"cluster,omitempty"`
}

// CancelRequest cancels a job.
type CancelRequest struct {
	Job string `json:"job"`
}

// LogsRequest asks for a job's log entries with Seq > After.
type LogsRequest struct {
	Job   string `json:"job"`
	After uint64 `json:"after"`
}

// LogsResult holds log entries in order, and the job's status so that a
// follower knows when to stop.
type LogsResult struct {
	Entries []LogEntry `json:"entries"`
	Status  string     `json:"status"`
}

// LogEntry is one line of a job's log: an event (Kind "event": group
// formed, worker lost, checkpoint, status change) or one optimizer step's
// statistics (Kind "step").
type LogEntry struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Message string    `json:"message,omitempty"`
	Step    *StepStat `json:"step,omitempty"`
}

// StepStat describes one optimizer step of a job.
type StepStat struct {
	Step         int     `json:"step"`        // 1-based index of the step taken
	TotalSteps   int     `json:"total_steps"` // steps of the whole run
	Epoch        int     `json:"data_epoch"`  // pass over the data
	Loss         float64 `json:"loss"`        // mean token loss of the global batch
	Tokens       int     `json:"tokens"`      // target tokens in the global batch
	LR           float64 `json:"lr"`
	GradNorm     float64 `json:"grad_norm"`
	World        int     `json:"world"`        // workers in the group
	StepMs       float64 `json:"step_ms"`      // wall time of the step on rank 0
	AllReduceMs  float64 `json:"allreduce_ms"` // of which all-reduce
	TokensPerSec float64 `json:"tokens_per_sec"`
	// At is when rank 0 finished the step (its clock).
	At time.Time `json:"at,omitzero"`
	// The evaluation after this step (training.eval_every), when there was
	// one: token-weighted mean loss over the eval set, its target tokens,
	// and its wall time (not part of StepMs).
	EvalLoss   float64 `json:"eval_loss,omitempty"`
	EvalTokens int     `json:"eval_tokens,omitempty"`
	EvalMs     float64 `json:"eval_ms,omitempty"`
}

// JobInfo is a job as the API shows it.
type JobInfo struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Kind is train or score.
	Kind        string    `json:"kind,omitempty"`
	Status      string    `json:"status"`
	Error       string    `json:"error,omitempty"`
	SubmittedAt time.Time `json:"submitted_at"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	EndedAt     time.Time `json:"ended_at,omitzero"`
	// GlobalBatch is the examples per optimizer step, fixed at submission.
	GlobalBatch int `json:"global_batch"`
	// Wants is what the job asked for (cluster section).
	Workers    int `json:"workers"`
	MinWorkers int `json:"min_workers"`
	MaxWorkers int `json:"max_workers"`
	// Epoch is the current (or last) group epoch, 0 before the first.
	Epoch   uint64   `json:"epoch"`
	Members []string `json:"members,omitempty"` // worker ids by rank
	// Step is the last committed optimizer step, TotalSteps the run's.
	Step       int     `json:"step"`
	TotalSteps int     `json:"total_steps"`
	Loss       float64 `json:"loss"`
	// TokensPerSec and StepMs are of the latest step.
	TokensPerSec float64      `json:"tokens_per_sec"`
	StepMs       float64      `json:"step_ms"`
	Restarts     int          `json:"restarts"`
	Checkpoints  []Checkpoint `json:"checkpoints,omitempty"`
	// Adapter is the final adapter directory (PEFT layout) of a completed
	// job.
	Adapter    string `json:"adapter,omitempty"`
	OutputDir  string `json:"output_dir"`
	ConfigYAML string `json:"config_yaml,omitempty"`
	// RecentSteps are the statistics of the last logged steps, oldest
	// first; only the status of one job carries them.
	RecentSteps []StepStat `json:"recent_steps,omitempty"`
	// LastEval is the latest step followed by an evaluation
	// (training.eval_every); only the status of one job carries it.
	LastEval *StepStat `json:"last_eval,omitempty"`
	// Score is the scoring phase of the job, if it has one.
	Score *ScoreInfo `json:"score,omitempty"`
}

// Checkpoint is a saved checkpoint recorded by the coordinator.
type Checkpoint struct {
	Step int       `json:"step"`
	Path string    `json:"path"`
	Time time.Time `json:"time"`
}

// ClusterInfo is the state of the coordinators and the workers.
type ClusterInfo struct {
	Leader  string       `json:"leader"`
	Servers []ServerInfo `json:"servers"`
	Workers []WorkerInfo `json:"workers"`
	Jobs    []JobInfo    `json:"jobs"`
}

// ServerInfo is one raft voter.
type ServerInfo struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	Leader   bool   `json:"leader"`
}

// WorkerInfo is one registered worker as the leader sees it.
type WorkerInfo struct {
	ID       string    `json:"id"`
	Host     string    `json:"host"`
	Device   string    `json:"device"`
	Alive    bool      `json:"alive"`
	LastSeen time.Time `json:"last_seen,omitzero"`
	Job      string    `json:"job,omitempty"`
	State    string    `json:"state,omitempty"`
	Step     int       `json:"step"`
	Failures int       `json:"failures"`
	// ExcludedUntil is the end of a cool-down after repeated failures.
	ExcludedUntil time.Time `json:"excluded_until,omitzero"`
}

// AddVoterRequest adds a coordinator to the raft cluster.
type AddVoterRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
}

// RemoveVoterRequest removes a coordinator from the raft cluster.
type RemoveVoterRequest struct {
	ID string `json:"id"`
}

// Reply is the envelope of every reply: Error or Result.
type Reply struct {
	Error  *Error          `json:"error,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}
