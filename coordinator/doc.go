// Package coordinator is herd's control plane: a raft-replicated state
// machine (hashicorp/raft, raft-boltdb/v2 log and stable store, file
// snapshots) holding workers, jobs, group epochs, committed steps and
// checkpoints; an embedded NATS server (clustered with the other
// coordinators' through routes, or an external NATS cluster); the job API
// and the worker protocol of internal/proto, served by the raft leader; and
// the scheduling loop that forms group epochs with the pure functions of
// coordinator/scheduler. It never touches tensors. Server embeds it all, so
// that `herd coord start` and the single-node `herd train` run the same
// code. See docs/architecture.md and docs/cluster.md.
package coordinator
