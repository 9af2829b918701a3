package proto

// Subjects. Every coordinator request subject is served by the raft leader
// only: it subscribes (in the queue group LeaderQueue) when it gains
// leadership and unsubscribes when it loses it, so NATS routes a request from
// any server of the cluster to the leader, and a request sent during an
// election finds no responder (Call retries until its deadline).
const (
	// Prefix starts every subject of this package.
	Prefix = "herd."

	// SubjectSubmit takes a SubmitRequest and returns a SubmitResult.
	SubjectSubmit = "herd.api.submit"
	// SubjectJobs takes a JobsRequest and returns a JobsResult.
	SubjectJobs = "herd.api.jobs"
	// SubjectStatus takes a StatusRequest and returns a StatusResult.
	SubjectStatus = "herd.api.status"
	// SubjectCancel takes a CancelRequest and returns a JobInfo.
	SubjectCancel = "herd.api.cancel"
	// SubjectLogs takes a LogsRequest and returns a LogsResult.
	SubjectLogs = "herd.api.logs"
	// SubjectAddVoter takes an AddVoterRequest (a coordinator joining the
	// raft cluster) and returns a ClusterInfo.
	SubjectAddVoter = "herd.api.voter.add"
	// SubjectRemoveVoter takes a RemoveVoterRequest and returns a
	// ClusterInfo.
	SubjectRemoveVoter = "herd.api.voter.remove"

	// SubjectRegister takes a RegisterRequest from a worker and returns a
	// RegisterResult.
	SubjectRegister = "herd.worker.register"
	// SubjectHeartbeat takes a Heartbeat and returns a HeartbeatResult
	// holding the worker's assignment.
	SubjectHeartbeat = "herd.worker.heartbeat"
	// SubjectStep carries StepReport messages from a group's rank 0,
	// published without a reply (losing one loses a log line only).
	SubjectStep = "herd.worker.step"
	// SubjectCheckpoint takes a CheckpointReport and returns an empty
	// result once the checkpoint is recorded in the raft log.
	SubjectCheckpoint = "herd.worker.checkpoint"
	// SubjectFailure takes a FailureReport and returns an empty result.
	SubjectFailure = "herd.worker.failure"
	// SubjectComplete takes a CompleteReport (the job's last step and final
	// checkpoint are done) and returns an empty result.
	SubjectComplete = "herd.worker.complete"
	// SubjectLeave takes a LeaveRequest (a worker shutting down cleanly)
	// and returns an empty result.
	SubjectLeave = "herd.worker.leave"
)

// WakeSubject is where the leader publishes (no payload) when it forms a
// group epoch that includes the worker, so that it heartbeats at once instead
// of at its next interval.
func WakeSubject(workerID string) string { return "herd.wake." + workerID }

// LeaderQueue is the NATS queue group of the leader's API subscriptions:
// during the short window where an old leader has not yet noticed it lost
// leadership, a request goes to one of the two, never both.
const LeaderQueue = "herd-leader"

// TokenHeader is the NATS header carrying the join token on every request.
const TokenHeader = "Herd-Token"
