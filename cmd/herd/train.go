package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/herdml/herd/configs"
	"github.com/herdml/herd/coordinator"
	"github.com/herdml/herd/internal/proto"
	"github.com/herdml/herd/telemetry"
	"github.com/herdml/herd/worker"
	"github.com/herdml/herd/worker/torchengine"
)

func trainCommand() *cli.Command {
	return &cli.Command{
		Name:      "train",
		Usage:     "train a LoRA/QLoRA adapter on this machine (single-node mode)",
		ArgsUsage: "CONFIG",
		Description: "Runs a one-node coordinator (its raft state under OUTPUT_DIR/.herd), an embedded NATS server on a " +
			"random loopback port and one worker over the devices, in this process: the cluster's code path. Ctrl-C saves " +
			"a checkpoint and stops; --resume continues from the last checkpoint. Prints the adapter directory.",
		Flags: []cli.Flag{setFlag,
			&cli.BoolFlag{Name: "resume", Usage: "continue the run in output_dir from its last checkpoint"},
			&cli.StringFlag{Name: "devices", Value: "cpu", Usage: "cpu or cuda:N[,cuda:M...]: one engine per device, gradients summed locally"},
			&cli.StringFlag{Name: "log-level", Value: "warn", Usage: "debug, info, warn or error"},
			httpAddrFlag,
		},
		Action: train,
	}
}

func train(c *cli.Context) error {
	path, err := oneArg(c, "CONFIG")
	if err != nil {
		return err
	}
	level, err := parseLevel(c.String("log-level"))
	if err != nil {
		return err
	}
	log, err := newLogger(c, level)
	if err != nil {
		return err
	}
	jsonLog := c.String("log-format") == "json"
	cfg, err := configs.Load(path, c.StringSlice("set"))
	if err != nil {
		return configProblems(c, err)
	}
	devices := splitList([]string{c.String("devices")})
	if len(devices) == 0 {
		return cli.Exit("--devices: name at least one device (cpu or cuda:N)", 2)
	}
	// One worker drives every device (a local group); the global batch is
	// micro_batch_size × grad_accum × devices unless global_batch_size is set.
	cfg.Cluster.Workers, cfg.Cluster.MinWorkers = 1, 1
	if cfg.Cluster.MaxWorkers > 0 {
		cfg.Cluster.MaxWorkers = 1
	}
	if cfg.Training.GlobalBatchSize == 0 {
		cfg.Training.GlobalBatchSize = cfg.Training.MicroBatchSize * cfg.Training.GradAccum * len(devices)
	}
	devices = []string{strings.Join(devices, ",")}
	// Check the inputs before anything is written.
	if err := absPaths(cfg, true); err != nil {
		return cli.Exit(err.Error(), 1)
	}
	dataDir := filepath.Join(cfg.OutputDir, ".herd")
	resume := c.Bool("resume")
	_, statErr := os.Stat(filepath.Join(dataDir, "raft.db"))
	existing := statErr == nil
	if resume && !existing {
		return cli.Exit(fmt.Sprintf("--resume: %s holds no run to resume (start one without --resume)", cfg.OutputDir), 1)
	}
	yaml, err := cfg.YAML()
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}

	// The run config's telemetry section: the coordinator and the worker
	// of this process share one service.
	tel, closeTel, err := startTelemetry(c.Context, telemetry.FromConfig(cfg.Telemetry, telemetry.DefaultServiceName, ""), log)
	if err != nil {
		return err
	}
	defer closeTel()
	srv, err := startLocalCoord(dataDir, existing, cfg, tel, log)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	closeSrv := sync.OnceFunc(func() { _ = srv.Close() })
	defer closeSrv()
	var prev *coordinator.Job
	for _, j := range srv.State().JobList() {
		prev = j
	}
	switch {
	case prev != nil && !resume && !proto.Terminal(prev.Status):
		return cli.Exit(fmt.Sprintf("%s holds an unfinished run (%s %s at step %d); pass --resume to continue it, or choose another output_dir (--set output_dir=DIR)",
			cfg.OutputDir, prev.ID, prev.Status, prev.Step), 1)
	case prev != nil && !resume:
		// The previous run ended (completed, failed or cancelled): start
		// afresh.
		closeSrv()
		if err := os.RemoveAll(dataDir); err != nil {
			return cli.Exit(err.Error(), 1)
		}
		if srv, err = startLocalCoord(dataDir, false, cfg, tel, log); err != nil {
			return cli.Exit(err.Error(), 1)
		}
		closeSrv = sync.OnceFunc(func() { _ = srv.Close() })
		defer closeSrv()
		prev = nil
	case resume && prev == nil:
		return cli.Exit(fmt.Sprintf("--resume: %s holds no job", cfg.OutputDir), 1)
	case resume && prev.Status == proto.StatusCompleted:
		fmt.Fprintf(c.App.Writer, "run already completed: adapter %s\n", prev.Adapter)
		return nil
	case resume && proto.Terminal(prev.Status):
		return cli.Exit(fmt.Sprintf("--resume: the run in %s is %s (%s); start it again without --resume", cfg.OutputDir, prev.Status, prev.Error), 1)
	}

	// Deferred after closeSrv, so that it stops first.
	stopLive, err := startLive(c, c.App.ErrWriter, srv, log)
	if err != nil {
		return err
	}
	defer stopLive()

	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	progLog, err := progressLogger(c, level)
	if err != nil {
		return err
	}
	prog := newProgress(c.App.ErrWriter, jsonLog, progLog)
	// The worker (rank 0) also appends every step to
	// output_dir/metrics/{train,eval}.{jsonl,csv}, as on a cluster.
	wcfgs := make([]worker.Config, len(devices))
	for i, dev := range devices {
		wcfgs[i] = worker.Config{ID: fmt.Sprintf("local-%d", i), Device: dev, URL: srv.ClientURL(), Token: localToken,
			NewEngine: torchengine.New, NewScorer: torchengine.NewScorer, Logger: log, Telemetry: tel, Progress: prog.step,
			FailAtStep: testFault("HERD_TEST_FAIL_AT_STEP"), KillAtStep: testFault("HERD_TEST_KILL_AT_STEP"),
			StepDelay: time.Duration(testFault("HERD_TEST_STEP_DELAY_MS")) * time.Millisecond}
	}
	lw, err := startLocalWorkers(wcfgs, log)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	defer lw.stop()

	req := proto.SubmitRequest{ConfigYAML: string(yaml), Name: cfg.RunName}
	if prev != nil {
		req = proto.SubmitRequest{ResumeJob: prev.ID}
	}
	res, err := submitLocal(ctx, srv, req)
	if err != nil {
		return cli.Exit(describeCallErr(srv.ClientURL(), err), 1)
	}
	id := res.Job.ID
	if prev != nil {
		cp := prev.LatestCheckpoint()
		where := "the start (no checkpoint)"
		if cp != nil {
			where = fmt.Sprintf("step %d (%s)", cp.Step, cp.Path)
		}
		fmt.Fprintf(c.App.ErrWriter, "resuming %s from %s\n", id, where)
	}

	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			stop()
			prog.done()
			fmt.Fprintln(c.App.ErrWriter, "interrupted: saving a checkpoint (Ctrl-C again to quit at once)")
			return pauseLocal(c, srv, lw.ws, id, cfg, path)
		case <-tick.C:
		}
		j := srv.State().Jobs[id]
		if j == nil || !proto.Terminal(j.Status) {
			continue
		}
		prog.done()
		switch j.Status {
		case proto.StatusCompleted:
			fmt.Fprintf(c.App.ErrWriter, "trained %d steps, final loss %.4f\n", j.Step, j.Loss)
			if sc := j.Score; sc != nil && sc.Done {
				fmt.Fprintf(c.App.ErrWriter, "scored %d rows of %s: %s\n", sc.Rows, sc.Data, sc.Out)
			}
			fmt.Fprintf(c.App.Writer, "adapter: %s\n", j.Adapter)
			return nil
		default:
			return cli.Exit(fmt.Sprintf("training %s: %s", j.Status, j.Error), 1)
		}
	}
}

// localToken authenticates the in-process workers with the in-process
// coordinator; its NATS server listens on loopback only.
var localToken = func() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}()

func startLocalCoord(dataDir string, existing bool, cfg *configs.Config, tel *telemetry.Telemetry, log *slog.Logger) (*coordinator.Server, error) {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, err
	}
	cc := coordinator.DefaultConfig()
	cc.ID, cc.DataDir, cc.Bootstrap = "local", dataDir, !existing
	cc.RaftAddr = fmt.Sprintf("127.0.0.1:%d", freePort())
	cc.NATSPort = 0
	cc.Token = localToken
	cc.RaftTimeout = 100 * time.Millisecond
	cc.Heartbeat = cfg.Cluster.Heartbeat
	cc.Logger = log
	cc.Telemetry = tel
	srv, err := coordinator.Start(cc)
	if err != nil {
		return nil, err
	}
	// One node: it leads once its election timeout passes.
	deadline := time.Now().Add(10 * time.Second)
	for !srv.IsLeader() {
		if time.Now().After(deadline) {
			_ = srv.Close()
			return nil, errors.New("the local coordinator did not become leader within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := srv.WaitApplied(10 * time.Second); err != nil {
		_ = srv.Close()
		return nil, err
	}
	return srv, nil
}

// freePort returns a loopback port that was free a moment ago, for the
// local raft transport.
func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// pauseLocal asks the workers to checkpoint and stop, and waits (bounded)
// for the job to be recorded as paused.
func pauseLocal(c *cli.Context, srv *coordinator.Server, ws []*worker.Worker, id string, cfg *configs.Config, path string) error {
	for _, w := range ws {
		w.Pause()
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		j := srv.State().Jobs[id]
		if j != nil && (j.Status == proto.StatusPaused || proto.Terminal(j.Status)) {
			if cp := j.LatestCheckpoint(); cp != nil {
				fmt.Fprintf(c.App.ErrWriter, "paused at step %d: checkpoint %s\n", cp.Step, cp.Path)
			}
			fmt.Fprintf(c.App.ErrWriter, "resume with: herd train %s --resume%s\n", path, setArgs(c))
			return cli.Exit("", 130)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cli.Exit("interrupted: no checkpoint was recorded within 60s", 130)
}

func setArgs(c *cli.Context) string {
	var b strings.Builder
	for _, s := range c.StringSlice("set") {
		fmt.Fprintf(&b, " --set %s", s)
	}
	return b.String()
}

// progress prints training progress: one updating line on a terminal, a
// line per step otherwise, or structured log records with --log-format json.
type progress struct {
	w     io.Writer
	tty   bool
	json  bool
	log   *slog.Logger
	start time.Time
	mu    sync.Mutex
	shown bool
	first int
}

func newProgress(w io.Writer, json bool, log *slog.Logger) *progress {
	return &progress{w: w, tty: isTerminal(w), json: json, log: log, first: -1}
}

// progressLogger is the logger of progress records (--log-format json):
// they are the output of a long command, shown whatever --log-level is.
func progressLogger(c *cli.Context, level slog.Level) (*slog.Logger, error) {
	return newLogger(c, min(level, slog.LevelInfo))
}

// isTerminal says whether w is a terminal (progress is then redrawn in
// place).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (p *progress) step(job string, s proto.StepStat) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.first < 0 {
		p.first, p.start = s.Step-1, time.Now()
	}
	done := s.Step - p.first
	eta := time.Duration(0)
	if done > 0 {
		eta = time.Duration(float64(time.Since(p.start)) / float64(done) * float64(s.TotalSteps-s.Step))
	}
	if p.json {
		p.log.Info("step", "job", job, "step", s.Step, "total_steps", s.TotalSteps, "loss", s.Loss, "lr", s.LR,
			"grad_norm", s.GradNorm, "tokens", s.Tokens, "tokens_per_sec", s.TokensPerSec, "step_ms", s.StepMs,
			"allreduce_ms", s.AllReduceMs, "world", s.World, "eta_s", eta.Seconds())
		if s.EvalTokens > 0 {
			p.log.Info("eval", "job", job, "step", s.Step, "eval_loss", s.EvalLoss, "eval_tokens", s.EvalTokens, "eval_ms", s.EvalMs)
		}
		return
	}
	line := fmt.Sprintf("step %d/%d  loss %.4f  lr %.2e  %.0f tok/s  ETA %s", s.Step, s.TotalSteps, s.Loss, s.LR, s.TokensPerSec, eta.Round(time.Second))
	if s.EvalTokens > 0 {
		// An evaluation stays on the screen: it is printed on its own line.
		if p.tty {
			fmt.Fprintf(p.w, "\r\033[K")
		}
		fmt.Fprintf(p.w, "eval after step %d: loss %.4f  perplexity %.3f  (%d tokens, %.1f s)\n", s.Step, s.EvalLoss, math.Exp(s.EvalLoss), s.EvalTokens, s.EvalMs/1000)
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.shown = true
		return
	}
	fmt.Fprintln(p.w, line)
}

func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprintln(p.w)
		p.shown = false
	}
}
