package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/herdml/herd/internal/natsutil"
	"github.com/herdml/herd/internal/proto"
	"github.com/herdml/herd/model/hub"
	"github.com/herdml/herd/telemetry"
)

// Config configures a Worker.
type Config struct {
	// ID names the worker (proto.ValidID); unique in the cluster. Required.
	ID string
	// Device is cpu or cuda:N. Default cpu.
	Device string
	// Host is reported at registration. Default os.Hostname().
	Host string
	// URL is the NATS URL of the coordinators (comma-separated for
	// several). Required.
	URL string
	// Connect are the NATS connection options (auth, TLS); Name and
	// NoEcho are set by the worker.
	Connect natsutil.ConnectOptions
	// Token is the cluster's join token. Required.
	Token string
	// NewEngine builds a job's engine. Required.
	NewEngine EngineFactory
	// NewScorer loads a model for a job's scoring phase
	// (worker/torchengine.NewScorer in production). Without it the worker
	// fails scoring assignments.
	NewScorer ScorerFactory
	// LoadData loads a job's training set. Default LoadDataset("").
	LoadData DataLoader
	// ResolveModel resolves model.path to a directory. Default hub.Resolve.
	ResolveModel func(path, revision string) (string, error)
	// StartTimeout bounds the first registration (no coordinator reachable,
	// no leader). Default 30s.
	StartTimeout time.Duration
	// Progress, when set, receives the statistics of every step this worker
	// takes as rank 0 (single-node mode prints them).
	Progress func(job string, s proto.StepStat)
	// FailAtStep and KillAtStep inject faults for tests: the engine returns
	// an error (once) when taking step FailAtStep, or the process SIGKILLs
	// itself before step KillAtStep's all-reduce. 0 is off.
	FailAtStep, KillAtStep int
	// CheckpointStore is where this worker, as rank 0, saves checkpoints:
	// StoreFiles (default: output_dir, shared by the workers) or StoreNATS
	// (the coordinators' JetStream object store). Any worker restores from
	// either.
	CheckpointStore string
	// StepDelay slows every step down (tests that must act between steps).
	StepDelay time.Duration
	// Logger receives the worker's log; nil discards it.
	Logger *slog.Logger
	// Telemetry receives the worker's spans (state.sync, step and its
	// phases, checkpoint) and metrics; nil records nothing.
	Telemetry *telemetry.Telemetry
}

// Worker is one training worker (one device).
type Worker struct {
	cfg Config
	log *slog.Logger
	nc  *nats.Conn // control: registration, heartbeats, reports
	cc  *nats.Conn // collective traffic (no echo)

	idleHeartbeat time.Duration

	mu     sync.Mutex
	status proto.Heartbeat
	latest proto.HeartbeatResult
	// latestTrace are the headers of the reply that brought latest: the
	// trace context of its assignment's group epoch.
	latestTrace nats.Header
	beatNow     chan struct{}
	changed     chan struct{}
	paused      atomic.Bool
	failed      atomic.Bool // FailAtStep used
	// lost is closed (and replaced) when the collective connection drops:
	// messages of the epoch in progress may be lost, so it fails at once
	// instead of waiting for the collective's timeout.
	lost chan struct{}
}

// ErrBadToken is returned by Run when the coordinators refuse the token.
var ErrBadToken = errors.New("worker: the coordinators refused the join token")

// New validates cfg and connects to NATS.
func New(cfg Config) (*Worker, error) {
	var errs []error
	if err := proto.ValidID(cfg.ID); err != nil {
		errs = append(errs, fmt.Errorf("worker: ID: %w", err))
	}
	if cfg.URL == "" {
		errs = append(errs, errors.New("worker: URL: required (--coord)"))
	}
	if cfg.Token == "" {
		errs = append(errs, errors.New("worker: Token: required (--token or HERD_TOKEN)"))
	}
	if cfg.NewEngine == nil {
		errs = append(errs, errors.New("worker: NewEngine: required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.Device == "" {
		cfg.Device = "cpu"
	}
	if cfg.Host == "" {
		cfg.Host, _ = os.Hostname()
	}
	if cfg.LoadData == nil {
		cfg.LoadData = LoadDataset("")
	}
	if cfg.ResolveModel == nil {
		cfg.ResolveModel = hub.Resolve
	}
	switch cfg.CheckpointStore {
	case "":
		cfg.CheckpointStore = StoreFiles
	case StoreFiles, StoreNATS:
	default:
		return nil, fmt.Errorf("worker: CheckpointStore %q: want %s or %s", cfg.CheckpointStore, StoreFiles, StoreNATS)
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Worker{cfg: cfg, log: log.With("worker", cfg.ID), beatNow: make(chan struct{}, 1), changed: make(chan struct{}, 1),
		idleHeartbeat: time.Second}
	w.status = proto.Heartbeat{WorkerID: cfg.ID, State: proto.WorkerIdle}
	co := cfg.Connect
	co.MaxReconnects = -1
	co.Name = "herd-worker-" + cfg.ID
	co.Logger = w.log
	nc, err := natsutil.Connect(cfg.URL, co)
	if err != nil {
		hint := "is a coordinator running there?"
		if low := strings.ToLower(fmt.Sprint(errors.Unwrap(err))); strings.Contains(low, "authorization") {
			hint = "pass --nats-user and --nats-password"
		} else if strings.Contains(low, "tls") || strings.Contains(low, "x509") || strings.Contains(low, "certificate") {
			hint = "pass the CA of the coordinators' certificate with --nats-ca and a tls:// URL"
		}
		return nil, fmt.Errorf("worker: cannot reach the coordinators at %s: %w (%s)", cfg.URL, err, hint)
	}
	co.Name += "-collective"
	co.NoEcho = true
	cc, err := natsutil.Connect(cfg.URL, co)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("worker: cannot reach the coordinators at %s: %w", cfg.URL, err)
	}
	w.nc, w.cc = nc, cc
	w.lost = make(chan struct{})
	cc.SetDisconnectErrHandler(func(_ *nats.Conn, err error) {
		w.mu.Lock()
		close(w.lost)
		w.lost = make(chan struct{})
		w.mu.Unlock()
		if err != nil {
			w.log.Warn("collective connection lost", "err", err)
		}
	})
	return w, nil
}

// connLost returns a channel closed when the collective connection drops.
func (w *Worker) connLost() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lost
}

// Close closes the NATS connections.
func (w *Worker) Close() {
	w.cc.Close()
	w.nc.Close()
}

// ID is the worker's id.
func (w *Worker) ID() string { return w.cfg.ID }

// Pause makes the worker stop training at the next step boundary; as rank
// 0 it first saves a checkpoint and reports it (the job becomes paused).
func (w *Worker) Pause() { w.paused.Store(true) }

// Run registers, heartbeats and trains what it is assigned until ctx ends.
// It returns an error when the first registration fails (bad token, no
// coordinator within StartTimeout).
func (w *Worker) Run(ctx context.Context) error {
	if err := w.register(ctx, w.cfg.StartTimeout); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	wake, err := w.nc.Subscribe(proto.WakeSubject(w.cfg.ID), func(*nats.Msg) { w.poke(w.beatNow) })
	if err != nil {
		return fmt.Errorf("worker: subscribe: %w", err)
	}
	defer func() { _ = wake.Unsubscribe() }()
	wg.Go(func() { w.heartbeatLoop(ctx) })
	w.log.Info("worker ready", "device", w.cfg.Device)
	for ctx.Err() == nil {
		a, _ := w.current()
		if a == nil || a.Status != proto.StatusRunning || w.paused.Load() {
			w.wait(ctx, time.Second)
			continue
		}
		if a.Score != nil {
			w.runScore(ctx, a)
			continue
		}
		w.runJob(ctx, a)
	}
	return nil
}

// Leave deregisters the worker (a clean shutdown).
func (w *Worker) Leave(ctx context.Context) error {
	return proto.Call(ctx, w.nc, proto.SubjectLeave, w.cfg.Token, proto.LeaveRequest{WorkerID: w.cfg.ID}, nil)
}

func (w *Worker) register(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var res proto.RegisterResult
	err := proto.Call(ctx, w.nc, proto.SubjectRegister, w.cfg.Token,
		proto.RegisterRequest{ID: w.cfg.ID, Host: w.cfg.Host, Device: w.cfg.Device, PID: os.Getpid()}, &res)
	switch {
	case proto.IsCode(err, proto.CodeBadToken):
		return fmt.Errorf("%w: %v", ErrBadToken, err)
	case err != nil:
		return fmt.Errorf("worker: register with %s: %w", w.cfg.URL, err)
	}
	if res.HeartbeatMs > 0 {
		w.idleHeartbeat = time.Duration(res.HeartbeatMs) * time.Millisecond
	}
	return nil
}

func (w *Worker) poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// setStatus updates what the next heartbeat reports.
func (w *Worker) setStatus(job string, epoch uint64, state string, step int, errMsg string) {
	w.mu.Lock()
	w.status.Job, w.status.Epoch, w.status.State, w.status.Step, w.status.Error = job, epoch, state, step, errMsg
	w.mu.Unlock()
}

func (w *Worker) setInterval(d time.Duration) {
	w.mu.Lock()
	w.status.IntervalMs = d.Milliseconds()
	w.mu.Unlock()
}

// current returns the latest assignment and the status of the job the
// worker reported.
func (w *Worker) current() (*proto.Assignment, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.latest.Assignment, w.latest.JobStatus
}

// epochContext returns ctx with a's group epoch span as the parent of the
// spans started from it: the trace context the leader sent with a (none
// when a is no longer the latest assignment).
func (w *Worker) epochContext(ctx context.Context, a *proto.Assignment) context.Context {
	w.mu.Lock()
	defer w.mu.Unlock()
	if l := w.latest.Assignment; l == nil || l.Job != a.Job || l.Epoch != a.Epoch {
		return ctx
	}
	return telemetry.Extract(ctx, w.latestTrace)
}

// wait blocks until the assignment changes, ctx ends or d passes.
func (w *Worker) wait(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-w.changed:
	case <-t.C:
	}
}

func (w *Worker) heartbeatLoop(ctx context.Context) {
	for {
		w.beat(ctx)
		w.mu.Lock()
		interval := time.Duration(w.status.IntervalMs) * time.Millisecond
		w.mu.Unlock()
		if interval <= 0 {
			interval = w.idleHeartbeat
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-w.beatNow:
			t.Stop()
		case <-t.C:
		}
	}
}

func (w *Worker) beat(ctx context.Context) {
	w.mu.Lock()
	hb := w.status
	if hb.IntervalMs <= 0 {
		hb.IntervalMs = w.idleHeartbeat.Milliseconds()
	}
	w.mu.Unlock()
	bctx, cancel := context.WithTimeout(ctx, max(2*time.Duration(hb.IntervalMs)*time.Millisecond, time.Second))
	defer cancel()
	var res proto.HeartbeatResult
	hdr, err := proto.CallMsg(bctx, w.nc, proto.SubjectHeartbeat, w.cfg.Token, nil, hb, &res)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Debug("heartbeat", "err", err)
		}
		return
	}
	if res.Unknown {
		w.log.Warn("the coordinator does not know this worker; registering again")
		if err := w.register(ctx, 5*time.Second); err != nil {
			w.log.Warn("register", "err", err)
		}
		return
	}
	w.mu.Lock()
	same := reflect.DeepEqual(w.latest, res)
	w.latest, w.latestTrace = res, hdr
	w.mu.Unlock()
	if !same {
		w.poke(w.changed)
	}
}
