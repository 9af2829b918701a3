// Package worker is a herd training worker: it registers with the
// coordinators, heartbeats, takes group-epoch assignments, loads a job's
// model and data once, and trains its shard of every global batch, summing
// gradients with the other members through the collective and taking the
// identical optimizer step. At the start of every group epoch the members
// agree on the most advanced state (or the job's latest checkpoint) and copy
// it, so a group re-formed after a failure, or grown by a joining worker,
// continues exactly where training stood. It knows no raft: it speaks the
// internal/proto protocol over NATS. The compute engine is behind the small
// Engine interface (worker/torchengine adapts internal/engine), so the
// package builds and tests without libtorch.
package worker
