package proto

import "encoding/json"

// Scoring fan-out (issue 8). A job in its scoring phase (a score job, or a
// training job whose config has scoring data, after its last step) carries
// a ScoreAssignment in its members' assignments; they lease batches of the
// plan on SubjectScoreLease and return predictions on SubjectScoreResult.
const (
	// SubjectScoreLease takes a LeaseRequest and returns a LeaseResult.
	SubjectScoreLease = "herd.score.lease"
	// SubjectScoreResult takes a ResultChunk and returns a LeaseResult once
	// the leader holds it (the ack: the worker then drops it); for the last
	// chunk of a batch with Want > 0 the reply leases the worker's next
	// batches, so that a worker in steady state makes one request per batch.
	SubjectScoreResult = "herd.score.result"
)

// Job kinds.
const (
	KindTrain = "train"
	KindScore = "score"
)

// WorkerScoring is the worker state while it scores batches.
const WorkerScoring = "scoring"

// ScoreAssignment tells a worker what to score.
type ScoreAssignment struct {
	// Data is the file scored, Adapter the PEFT adapter ("" for the base
	// model); both are paths every worker sees.
	Data    string `json:"data"`
	Adapter string `json:"adapter,omitempty"`
	// Task and BatchSize fix the plan, Fingerprint identifies it
	// (scoring.PlanFile): a worker whose plan differs refuses to score.
	Task        string `json:"task"`
	BatchSize   int    `json:"batch_size"`
	Fingerprint string `json:"fingerprint"`
	Batches     int    `json:"batches"`
	Rows        int    `json:"rows"`
}

// LeaseRequest asks for up to Want batches of a job's scoring plan.
type LeaseRequest struct {
	WorkerID    string `json:"worker_id"`
	Job         string `json:"job"`
	Fingerprint string `json:"fingerprint"`
	Want        int    `json:"want"`
}

// LeaseResult holds the leased batch ids; with none, Done says the plan
// is complete (stop), otherwise retry after RetryMs (every pending batch is
// leased to someone).
type LeaseResult struct {
	Batches []int `json:"batches,omitempty"`
	Done    bool  `json:"done,omitempty"`
	RetryMs int64 `json:"retry_ms,omitempty"`
}

// ResultChunk carries part Part of Parts of a batch's predictions (a
// batch whose encoded predictions exceed the connection's max_payload is
// split by rows). Preds is a JSON array of scoring.Prediction.
type ResultChunk struct {
	WorkerID string          `json:"worker_id"`
	Job      string          `json:"job"`
	Batch    int             `json:"batch"`
	Part     int             `json:"part"`
	Parts    int             `json:"parts"`
	Preds    json.RawMessage `json:"preds"`
	// Want, on the last chunk, asks for that many more batches in the
	// reply.
	Want int `json:"want,omitempty"`
}

// ScoreInfo is a scoring job's progress as `herd status` shows it.
type ScoreInfo struct {
	Phase        string `json:"phase"` // scoring or done
	Data         string `json:"data"`
	Adapter      string `json:"adapter,omitempty"`
	Out          string `json:"out"`
	Fingerprint  string `json:"fingerprint"`
	RowsTotal    int64  `json:"rows_total"`
	RowsDone     int64  `json:"rows_done"`
	BatchesTotal int    `json:"batches_total"`
	// BatchesDone are the batches recorded in raft as accepted (they are
	// in the spool and never scored again).
	BatchesDone       int     `json:"batches_done"`
	BatchesInFlight   int     `json:"batches_in_flight"`
	BatchesRetried    int     `json:"batches_retried"`
	DuplicatesDropped int     `json:"duplicates_dropped"`
	RowsPerSec        float64 `json:"rows_per_sec"`
	ETASec            float64 `json:"eta_s"`
	// Workers: per worker rows and batches done, leases in flight, leases
	// lost (since the current leader started).
	Workers map[string]ScoreWorker `json:"workers,omitempty"`
	// Metrics are the final metrics of a finished job, or the partial ones
	// over the batches accepted so far.
	Metrics map[string]*float64 `json:"metrics,omitempty"`
}

// ScoreWorker is one worker's share of a scoring job.
type ScoreWorker struct {
	Rows     int64 `json:"rows"`
	Batches  int   `json:"batches"`
	InFlight int   `json:"in_flight"`
	Lost     int   `json:"lost"`
}
