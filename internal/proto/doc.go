// Package proto is herd's wire contract between the coordinator, the workers
// and the CLI: every NATS subject under "herd." (except the collective's own
// "herd.coll." traffic) and every message that travels on it, as JSON.
//
// Requests carry the cluster's join token in the Herd-Token header (see
// TokenHeader); a request without it, or with a wrong one, gets an error
// reply with code CodeBadToken. Replies are a Reply envelope: either an Error
// from the catalogue in errors.go or a result. Call does a request with the
// header, retries while no coordinator answers (during a leader election) and
// turns error replies into *Error values. The package knows nothing of raft
// or tensors; it is the one place to read to learn what flows on the wire.
//
// One file per concern: subjects.go (the subject scheme), errors.go (the
// error catalogue), api.go (jobs and cluster API used by the CLI), worker.go
// (registration, heartbeats, assignments, reports), client.go (Call).
package proto
