package coordinator

import (
	"context"
	"fmt"
	"strings"

	"github.com/herdml/herd/internal/proto"
)

// Read-only accessors for observers of a coordinator (the live view of
// coordinator/live, `herd status JOB`). They work on every coordinator,
// leader or follower.

// RecentSteps is how many step statistics a job's status carries: enough
// for a sparkline of the loss and a rate for the ETA.
const RecentSteps = 20

// RecentSteps returns the statistics of the job's last n logged steps,
// oldest first (fewer when the log holds fewer).
func (j *Job) RecentSteps(n int) []proto.StepStat {
	var out []proto.StepStat
	for i := len(j.Log) - 1; i >= 0 && len(out) < n; i-- {
		if s := j.Log[i].Step; s != nil {
			out = append(out, *s)
		}
	}
	for i, k := 0, len(out)-1; i < k; i, k = i+1, k-1 {
		out[i], out[k] = out[k], out[i]
	}
	return out
}

// LastEval returns the statistics of the job's latest logged step that was
// followed by an evaluation (training.eval_every), nil when its log holds
// none.
func (j *Job) LastEval() *proto.StepStat {
	for i := len(j.Log) - 1; i >= 0; i-- {
		if s := j.Log[i].Step; s != nil && s.EvalTokens > 0 {
			c := *s
			return &c
		}
	}
	return nil
}

// Role is this coordinator's raft state: "leader", "follower",
// "candidate" or "shutdown".
func (s *Server) Role() string { return strings.ToLower(s.raft.State().String()) }

// ClusterStatus returns the cluster as the leader sees it: the raft
// servers, the workers with their liveness (which only the leader knows:
// heartbeats are not in raft) and the jobs. It asks the leader over NATS,
// so a follower gets the same answer. When no leader answers within ctx
// (an election, a lost majority) it returns what this coordinator knows
// itself, the servers of its raft configuration and the registered
// workers with Alive false and no LastSeen, together with the error.
func (s *Server) ClusterStatus(ctx context.Context) (proto.ClusterInfo, error) {
	var res proto.StatusResult
	err := proto.Call(ctx, s.nc, proto.SubjectStatus, s.cfg.Token, proto.StatusRequest{}, &res)
	if err == nil && res.Cluster != nil {
		return *res.Cluster, nil
	}
	if err == nil {
		err = fmt.Errorf("the leader's status reply holds no cluster")
	}
	ci := s.clusterInfo()
	st := s.fsm.State()
	for _, w := range st.WorkerList() {
		ci.Workers = append(ci.Workers, proto.WorkerInfo{ID: w.ID, Host: w.Host, Device: w.Device, Failures: w.Failures, ExcludedUntil: w.ExcludedUntil})
	}
	for _, j := range st.JobList() {
		ci.Jobs = append(ci.Jobs, j.Info(false))
	}
	return ci, fmt.Errorf("coordinator %s: cluster status from the leader: %w", s.cfg.ID, err)
}

// JobStatus returns a job as the leader's status API shows it: with its
// recent steps and, while it scores, the leader's live scoring progress
// (rate, ETA, per-worker shares, partial metrics), which raft does not
// hold. It asks the leader over NATS, from any coordinator.
func (s *Server) JobStatus(ctx context.Context, id string) (proto.JobInfo, error) {
	var res proto.StatusResult
	if err := proto.Call(ctx, s.nc, proto.SubjectStatus, s.cfg.Token, proto.StatusRequest{Job: id}, &res); err != nil {
		return proto.JobInfo{}, fmt.Errorf("coordinator %s: status of %s from the leader: %w", s.cfg.ID, id, err)
	}
	if res.Job == nil {
		return proto.JobInfo{}, fmt.Errorf("coordinator %s: the leader's status reply holds no job %s", s.cfg.ID, id)
	}
	return *res.Job, nil
}
