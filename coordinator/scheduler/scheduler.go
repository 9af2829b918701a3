// Package scheduler decides, as pure functions over a read-only view of the
// cluster, which workers form each job's data-parallel group: start a queued
// job when enough workers are free, re-form a running job's group when a
// member is lost or its epoch failed (counting restarts against the job's
// budget), grow it when free workers appear, and put it in waiting when
// fewer than min_workers remain. It knows nothing of raft, NATS or time
// beyond the Now it is given; the coordinator turns its decisions into raft
// commands.
package scheduler

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/herdml/herd/internal/proto"
)

// Worker is a registered worker as the coordinator sees it.
type Worker struct {
	ID string
	// Alive: heartbeats arrive (or the leader is still in its grace period
	// after taking over).
	Alive bool
	// Excluded: in a cool-down after repeated failures.
	Excluded bool
	// Restarted: the worker registered again after the job's current epoch
	// was formed, so its old in-memory state is gone.
	Restarted bool
	// FailedJob and FailedEpoch: the group epoch the worker reports as
	// failed ("" / 0 when none).
	FailedJob   string
	FailedEpoch uint64
}

func (w Worker) usable() bool { return w.Alive && !w.Excluded }

// Job is an active job (queued, running or waiting).
type Job struct {
	ID     string
	Status string
	// Wants (cluster section): Workers > 0 asks for exactly that many;
	// 0 takes all free workers, at most MaxWorkers when that is > 0.
	Workers, MinWorkers, MaxWorkers int
	// Epoch and Members (by rank) of the current group; empty when none.
	Epoch   uint64
	Members []string
	// Restarts so far, and the budget (cluster.max_restarts).
	Restarts, MaxRestarts int
	// WaitingSince is when the job entered status waiting.
	WaitingSince time.Time
}

// View is the read-only input of Schedule.
type View struct {
	// Jobs in submission order: earlier jobs get workers first.
	Jobs []Job
	// Workers, in any order.
	Workers []Worker
	Now     time.Time
	// WaitTimeout bounds status waiting; a job waiting longer fails.
	WaitTimeout time.Duration
}

// Action is what a Decision does.
type Action int

// Actions.
const (
	// Form a new group epoch with Members.
	Form Action = iota + 1
	// Wait: too few workers; the job goes to status waiting.
	Wait
	// Fail the job (restart budget spent, waited too long).
	Fail
)

func (a Action) String() string {
	switch a {
	case Form:
		return "form"
	case Wait:
		return "wait"
	case Fail:
		return "fail"
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// Decision is one change to one job.
type Decision struct {
	Job    string
	Action Action
	// Epoch is the epoch to form (the job's + 1).
	Epoch   uint64
	Members []string
	// Restart: a re-formation after a failure (counts against the budget).
	Restart bool
	// Lost are the members dropped because they died, restarted or were
	// excluded (the coordinator counts a failure against each).
	Lost   []string
	Reason string
}

// Schedule returns the decisions for the view, at most one per job.
func Schedule(v View) []Decision {
	byID := map[string]Worker{}
	for _, w := range v.Workers {
		byID[w.ID] = w
	}
	claimed := map[string]bool{}
	// Members of running groups stay with their job unless lost.
	for _, j := range v.Jobs {
		if j.Status != proto.StatusRunning {
			continue
		}
		for _, id := range j.Members {
			if w, ok := byID[id]; ok && w.usable() && !w.Restarted {
				claimed[id] = true
			}
		}
	}
	var free []string
	for _, w := range v.Workers {
		if w.usable() && !claimed[w.ID] {
			free = append(free, w.ID)
		}
	}
	slices.Sort(free)
	take := func(n int) []string {
		n = min(n, len(free))
		got := free[:n:n]
		free = free[n:]
		return got
	}

	var out []Decision
	for _, j := range v.Jobs {
		target := j.Workers
		if target <= 0 {
			target = j.MaxWorkers
			if target <= 0 {
				target = int(^uint(0) >> 1)
			}
		}
		minW := max(1, j.MinWorkers)
		switch j.Status {
		case proto.StatusQueued:
			need := j.Workers
			if need <= 0 {
				need = minW
			}
			if len(free) < need {
				continue
			}
			out = append(out, Decision{Job: j.ID, Action: Form, Epoch: j.Epoch + 1, Members: take(target), Reason: "start"})
		case proto.StatusWaiting:
			if len(free) >= minW {
				out = append(out, Decision{Job: j.ID, Action: Form, Epoch: j.Epoch + 1, Members: take(target), Reason: "workers returned"})
				continue
			}
			if v.WaitTimeout > 0 && !j.WaitingSince.IsZero() && v.Now.Sub(j.WaitingSince) > v.WaitTimeout {
				out = append(out, Decision{Job: j.ID, Action: Fail,
					Reason: fmt.Sprintf("waited %v for at least %d worker(s) (the coordinator's wait timeout)", v.WaitTimeout, minW)})
			}
		case proto.StatusRunning:
			if d, ok := running(j, byID, target, minW, take, len(free)); ok {
				out = append(out, d)
			}
		}
	}
	return out
}

func running(j Job, byID map[string]Worker, target, minW int, take func(int) []string, nfree int) (Decision, bool) {
	var keep, lost, failed []string
	for _, id := range j.Members {
		w, ok := byID[id]
		switch {
		case !ok || !w.usable() || w.Restarted:
			lost = append(lost, id)
		default:
			keep = append(keep, id)
			if w.FailedJob == j.ID && w.FailedEpoch == j.Epoch {
				failed = append(failed, id)
			}
		}
	}
	if len(lost) == 0 && len(failed) == 0 {
		if len(keep) < target && nfree > 0 {
			add := take(target - len(keep))
			return Decision{Job: j.ID, Action: Form, Epoch: j.Epoch + 1, Members: append(slices.Clone(keep), add...),
				Reason: fmt.Sprintf("grow: %s joined", strings.Join(add, " "))}, true
		}
		return Decision{}, false
	}
	reason := describe(lost, failed)
	if j.Restarts >= j.MaxRestarts {
		return Decision{Job: j.ID, Action: Fail, Lost: lost,
			Reason: fmt.Sprintf("restart budget spent (cluster.max_restarts = %d): %s", j.MaxRestarts, reason)}, true
	}
	members := slices.Clone(keep)
	if len(members) < target {
		members = append(members, take(target-len(members))...)
	}
	if len(members) < minW {
		return Decision{Job: j.ID, Action: Wait, Lost: lost,
			Reason: fmt.Sprintf("%s; %d worker(s) left, min_workers is %d", reason, len(members), minW)}, true
	}
	return Decision{Job: j.ID, Action: Form, Epoch: j.Epoch + 1, Members: members, Restart: true, Lost: lost, Reason: reason}, true
}

func describe(lost, failed []string) string {
	var parts []string
	if len(lost) > 0 {
		parts = append(parts, "lost "+strings.Join(lost, " "))
	}
	if len(failed) > 0 {
		parts = append(parts, "epoch failed on "+strings.Join(failed, " "))
	}
	return strings.Join(parts, "; ")
}
