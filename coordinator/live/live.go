// Package live is herd's live view: a small web page, embedded in the
// binary and served by a coordinator (`herd coord start --http-addr`,
// `herd train --http-addr`), that shows the cluster's members, its jobs,
// and the selected job's loss and throughput curves, checkpoints, metrics
// and recent events, refreshed every second and a half from a JSON
// endpoint. The page is plain HTML, CSS and JavaScript with its charts
// drawn as inline SVG, so it works offline. The package also renders a
// job's status as text for `herd status JOB`. It reads a coordinator
// through the read-only Source interface and never changes anything.
package live

import (
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/herdml/herd/coordinator"
	"github.com/herdml/herd/internal/proto"
)

// Source is what the live view reads: a coordinator (*coordinator.Server),
// leader or follower.
type Source interface {
	// ID is the coordinator's raft id.
	ID() string
	// Role is its raft state ("leader", "follower", ...).
	Role() string
	// State is its copy of the replicated state (read-only).
	State() *coordinator.State
	// ClusterStatus is the cluster as the leader sees it (worker liveness
	// included); with an error, what the coordinator knows itself.
	ClusterStatus(ctx context.Context) (proto.ClusterInfo, error)
	// JobStatus is a job as the leader sees it (live scoring progress
	// included).
	JobStatus(ctx context.Context, id string) (proto.JobInfo, error)
}

// MaxPoints bounds the points of a curve sent to the page: a long run is
// thinned to about this many steps, always keeping the latest.
const MaxPoints = 500

// maxEvents is how many of the selected job's latest events the page
// lists.
const maxEvents = 12

// clusterTimeout bounds the wait for the leader's cluster status, so that
// the page still refreshes (with this coordinator's own view) during an
// election.
const clusterTimeout = time.Second

//go:embed static
var static embed.FS

// View is the JSON document of /api/state.
type View struct {
	// Coordinator and Role describe the coordinator serving the page.
	Coordinator string    `json:"coordinator"`
	Role        string    `json:"role"`
	Leader      string    `json:"leader"`
	Time        time.Time `json:"time"`
	// ClusterError says why the leader's view is missing (liveness is then
	// unknown).
	ClusterError string             `json:"cluster_error,omitempty"`
	Servers      []proto.ServerInfo `json:"servers"`
	Workers      []Worker           `json:"workers"`
	Jobs         []proto.JobInfo    `json:"jobs"`
	// Selected is the job shown in detail: the one asked for (?job=ID),
	// else the newest running one, else the newest.
	Selected *Job `json:"selected,omitempty"`
}

// Worker is a worker with its rank in its job's current group.
type Worker struct {
	proto.WorkerInfo
	// Rank is the worker's rank in Job's group epoch, -1 when in none.
	Rank int `json:"rank"`
}

// Job is the selected job in detail.
type Job struct {
	proto.JobInfo
	// DataEpoch is the pass over the data of the latest step.
	DataEpoch int `json:"data_epoch"`
	// ETASeconds estimates the time to the last step of a running job
	// (absent when unknown).
	ETASeconds *float64 `json:"eta_s,omitempty"`
	// AllReduceShare is the fraction of recent step time spent in the
	// all-reduce (absent with no all-reduce time measured).
	AllReduceShare *float64 `json:"allreduce_share,omitempty"`
	// LossSeries and TokensPerSecSeries are [step, value] points, thinned
	// to about MaxPoints.
	LossSeries         [][2]float64 `json:"loss_series"`
	TokensPerSecSeries [][2]float64 `json:"tokens_per_sec_series"`
	// EvalSeries are [step, eval loss] points of the evaluations
	// (training.eval_every), thinned the same way; empty without any.
	EvalSeries [][2]float64 `json:"eval_series"`
	// Metrics are the job's metrics as Metrics finds them in its record
	// (a scoring phase's results), shown as a flat table; absent when the
	// job has none.
	Metrics map[string]any `json:"metrics,omitempty"`
	// Events are the latest event lines of the job's log, newest last.
	Events []proto.LogEntry `json:"events"`
}

// NewHandler returns the live view's handler: the page at /, its assets,
// and the JSON state at /api/state.
func NewHandler(src Source, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	assets, err := fs.Sub(static, "static")
	if err != nil {
		// The embedded tree is fixed at build time: a missing directory is
		// a bug in this package.
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /", http.FileServerFS(assets))
	mux.HandleFunc("GET /api/state", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), clusterTimeout)
		defer cancel()
		v := Snapshot(ctx, src, r.URL.Query().Get("job"), time.Now())
		w.Header().Set("Content-Type", "application/json")
		// The page polls: a cached answer would freeze it.
		w.Header().Set("Cache-Control", "no-store")
		if err := json.NewEncoder(w).Encode(v); err != nil {
			log.Debug("live view: write state", "err", err)
		}
	})
	return mux
}

// Snapshot builds the view of src at now, with job (or the default job)
// in detail.
func Snapshot(ctx context.Context, src Source, job string, now time.Time) View {
	ci, err := src.ClusterStatus(ctx)
	st := src.State()
	v := View{Coordinator: src.ID(), Role: src.Role(), Leader: ci.Leader, Time: now,
		Servers: ci.Servers, Workers: []Worker{}, Jobs: []proto.JobInfo{}}
	if err != nil {
		v.ClusterError = err.Error()
	}
	// Jobs and ranks come from this coordinator's own state, the freshest
	// it has; the leader's answer adds only what raft does not hold
	// (liveness), and without it the workers' jobs still show.
	type seat struct {
		job  string
		rank int
	}
	member := map[string]seat{}
	var running, newest *coordinator.Job
	for _, j := range st.JobList() {
		v.Jobs = append(v.Jobs, j.Info(false))
		newest = j
		if j.Status == proto.StatusRunning {
			running = j
			for r, m := range j.Epoch.Members {
				member[m] = seat{j.ID, r}
			}
		}
	}
	for _, w := range ci.Workers {
		lw := Worker{WorkerInfo: w, Rank: -1}
		if m, ok := member[w.ID]; ok && (w.Job == "" || w.Job == m.job) {
			lw.Job, lw.Rank = m.job, m.rank
		}
		v.Workers = append(v.Workers, lw)
	}
	sel := st.Jobs[job]
	if sel == nil {
		sel = running
	}
	if sel == nil {
		sel = newest
	}
	if sel != nil {
		d := detail(sel)
		if sel.Scoring() && err == nil {
			liveScore(ctx, src, &d)
		}
		v.Selected = &d
	}
	return v
}

// liveScore replaces a scoring job's recorded progress by the leader's
// live one: raft records accepted batches, but the rate, the ETA and the
// partial metrics exist only on the leader. Without an answer the
// recorded progress stays.
func liveScore(ctx context.Context, src Source, d *Job) {
	info, err := src.JobStatus(ctx, d.ID)
	if err != nil || info.Score == nil {
		return
	}
	d.Score = info.Score
	if len(info.Score.Metrics) > 0 {
		d.Metrics = map[string]any{}
		for k, v := range info.Score.Metrics {
			if v == nil {
				d.Metrics[k] = nil
			} else {
				d.Metrics[k] = *v
			}
		}
	}
}

// detail builds the detailed view of j.
func detail(j *coordinator.Job) Job {
	d := Job{JobInfo: j.Info(false), LossSeries: [][2]float64{}, TokensPerSecSeries: [][2]float64{}, EvalSeries: [][2]float64{},
		Events: []proto.LogEntry{}}
	d.RecentSteps, d.LastEval = j.RecentSteps(coordinator.RecentSteps), j.LastEval()
	var steps, evals []proto.StepStat
	for _, e := range j.Log {
		switch {
		case e.Step != nil:
			steps = append(steps, *e.Step)
			if e.Step.EvalTokens > 0 {
				evals = append(evals, *e.Step)
			}
		case e.Kind == "event":
			d.Events = append(d.Events, e)
		}
	}
	for _, s := range thin(evals, MaxPoints) {
		d.EvalSeries = append(d.EvalSeries, [2]float64{float64(s.Step), s.EvalLoss})
	}
	if n := len(d.Events); n > maxEvents {
		d.Events = slices.Clone(d.Events[n-maxEvents:])
	}
	for _, s := range thin(steps, MaxPoints) {
		d.LossSeries = append(d.LossSeries, [2]float64{float64(s.Step), s.Loss})
		d.TokensPerSecSeries = append(d.TokensPerSecSeries, [2]float64{float64(s.Step), s.TokensPerSec})
	}
	if n := len(steps); n > 0 {
		d.DataEpoch = steps[n-1].Epoch
	}
	if eta, ok := ETA(&d.JobInfo); ok {
		s := eta.Seconds()
		d.ETASeconds = &s
	}
	if share, ok := AllReduceShare(d.RecentSteps); ok {
		d.AllReduceShare = &share
	}
	// The log and config can be large and hold no metrics: leave them out
	// of the record Metrics marshals.
	rec := *j
	rec.Log, rec.ConfigYAML = nil, ""
	d.Metrics = Metrics(rec)
	return d
}

// thin returns at most about max of steps, evenly spaced and always with
// the last one.
func thin(steps []proto.StepStat, max int) []proto.StepStat {
	if len(steps) <= max {
		return steps
	}
	stride := (len(steps) + max - 1) / max
	var out []proto.StepStat
	for i := (len(steps) - 1) % stride; i < len(steps); i += stride {
		out = append(out, steps[i])
	}
	return out
}

// Metrics returns the "metrics" object of a job record (any value that
// marshals to a JSON object), or else the first one nested one level down
// (a scoring phase's, "score": {"metrics": ...}); nil when there is none.
// Metrics are found by name, not by type, so that whatever metrics a job
// carries are shown without this package knowing their fields.
func Metrics(record any) map[string]any {
	b, err := json.Marshal(record)
	if err != nil {
		return nil
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(b, &fields) != nil {
		return nil
	}
	if m := metricsIn(b); m != nil {
		return m
	}
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		if m := metricsIn(fields[k]); m != nil {
			return m
		}
	}
	return nil
}

// metricsIn returns the non-empty "metrics" object of a JSON object.
func metricsIn(b json.RawMessage) map[string]any {
	var o struct {
		Metrics map[string]any `json:"metrics"`
	}
	if json.Unmarshal(b, &o) != nil || len(o.Metrics) == 0 {
		return nil
	}
	return o.Metrics
}
