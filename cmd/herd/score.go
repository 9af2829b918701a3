package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/herdml/herd/configs"
	"github.com/herdml/herd/internal/proto"
	"github.com/herdml/herd/internal/scorerun"
	"github.com/herdml/herd/internal/torch"
	"github.com/herdml/herd/model/hub"
	"github.com/herdml/herd/scoring"
	"github.com/herdml/herd/worker"
	"github.com/herdml/herd/worker/torchengine"
)

func scoreCommand() *cli.Command {
	return &cli.Command{
		Name:  "score",
		Usage: "score a data set with a model and optional adapter; writes predictions.jsonl and metrics.json",
		Description: "Single-node scoring: per-example loss (default), generation, or multiple choice. " +
			"Without --config the rows are completion-format {\"id\", \"text\"}; with --config its dataset " +
			"format and scoring section apply. predictions.jsonl follows the input order. Like `herd train`, it " +
			"runs the cluster's path in one process: an in-process coordinator plans the batches and a worker " +
			"scores them (its state lives in OUT/.herd while it runs); --direct scores in a plain loop instead.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Required: true, Usage: "model directory or hub id"},
			&cli.StringFlag{Name: "adapter", Usage: "PEFT adapter directory"},
			&cli.StringFlag{Name: "data", Required: true, Usage: "rows to score: JSONL, JSON, CSV or Parquet"},
			&cli.StringFlag{Name: "out", Required: true, Usage: "output directory"},
			&cli.StringFlag{Name: "config", Usage: "run config whose dataset and scoring sections apply"},
			setFlag,
			&cli.StringFlag{Name: "task", Usage: "loss, generate, multiple_choice or classification (overrides scoring.task)"},
			&cli.StringFlag{Name: "device", Value: "cpu", Usage: "cpu or cuda:N"},
			&cli.BoolFlag{Name: "direct", Usage: "score in a plain in-process loop, without the in-process coordinator"},
			&cli.StringFlag{Name: "log-level", Value: "warn", Usage: "debug, info, warn or error"},
		},
		Action: func(c *cli.Context) error {
			dir, err := hub.Resolve(c.String("model"), "")
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			dev, err := torch.ParseDevice(c.String("device"))
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			sets := append([]string{"model.path=" + strconv.Quote(dir), "dataset.train=" + strconv.Quote(c.String("data"))}, c.StringSlice("set")...)
			if t := c.String("task"); t != "" {
				sets = append(sets, "scoring.task="+t)
			}
			var cfg *configs.Config
			if path := c.String("config"); path != "" {
				cfg, err = configs.Load(path, sets)
			} else {
				dtype := "bfloat16"
				if dev == torch.CPU {
					dtype = "float32"
				}
				cfg, err = configs.Parse([]byte("model:\n  dtype: "+dtype+"\n"), "herd score", sets)
			}
			if err != nil {
				return configProblems(c, err)
			}
			level, err := parseLevel(c.String("log-level"))
			if err != nil {
				return err
			}
			log, err := newLogger(c, level)
			if err != nil {
				return err
			}
			var res scoring.Result
			if c.Bool("direct") {
				res, err = scorerun.Run(c.Context, scorerun.Options{
					ModelDir: dir, AdapterDir: c.String("adapter"), Data: c.String("data"), Out: c.String("out"),
					Config: cfg, Device: dev, Log: log,
				})
			} else {
				var progLog *slog.Logger
				if progLog, err = progressLogger(c, level); err != nil {
					return err
				}
				prog := newScoreProgress(c.App.ErrWriter, c.String("log-format") == "json", progLog)
				res, err = scoreLocal(c.Context, cfg, c.String("adapter"), c.String("data"), c.String("out"), c.String("device"), log, prog.show)
				prog.done()
			}
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			enc := json.NewEncoder(c.App.Writer)
			enc.SetIndent("", "  ")
			if err := enc.Encode(res.Metrics); err != nil {
				return err
			}
			fmt.Fprintf(c.App.ErrWriter, "scored %d rows (%d with errors): %s, %s\n", res.Counts.Rows, res.Counts.RowsWithErrors,
				filepath.Join(c.String("out"), "predictions.jsonl"), filepath.Join(c.String("out"), "metrics.json"))
			return nil
		},
	}
}

// scoreLocal runs `herd score` through the cluster's path in one process,
// as `herd train` does: an in-process coordinator (state in out/.herd,
// removed at the end) plans the batches and one in-process worker scores
// them; the Merger writes out/predictions.jsonl and out/metrics.json.
func scoreLocal(ctx context.Context, cfg *configs.Config, adapter, data, out, device string, log *slog.Logger, progress func(proto.ScoreInfo)) (scoring.Result, error) {
	var err error
	abs := func(p string) string {
		if p == "" || err != nil {
			return p
		}
		var a string
		a, err = filepath.Abs(p)
		return a
	}
	adapter, data, out = abs(adapter), abs(data), abs(out)
	if err != nil {
		return scoring.Result{}, err
	}
	cfg.Scoring.Data = data
	cfg.OutputDir = out
	cfg.Cluster.Workers, cfg.Cluster.MinWorkers, cfg.Cluster.MaxWorkers = 1, 1, 0
	yaml, err := cfg.YAML()
	if err != nil {
		return scoring.Result{}, err
	}
	// The coordinator's state is this run's alone: a spool left by an
	// interrupted run of the same plan is taken up by the Merger, not
	// through raft.
	state := filepath.Join(out, ".herd")
	if err := os.RemoveAll(state); err != nil {
		return scoring.Result{}, err
	}
	srv, err := startLocalCoord(state, false, cfg, nil, log)
	if err != nil {
		return scoring.Result{}, err
	}
	defer func() {
		_ = srv.Close()
		_ = os.RemoveAll(state)
	}()
	lw, err := startLocalWorkers([]worker.Config{{ID: "local-0", Device: device, URL: srv.ClientURL(), Token: localToken,
		NewEngine: torchengine.New, NewScorer: torchengine.NewScorer, Logger: log}}, log)
	if err != nil {
		return scoring.Result{}, err
	}
	defer lw.stop()
	sub, err := submitLocal(ctx, srv, proto.SubmitRequest{ConfigYAML: string(yaml), Name: "score", Score: true, Adapter: adapter, ScoreOut: out})
	if err != nil {
		return scoring.Result{}, fmt.Errorf("submit: %w", err)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	lastShown := time.Now()
	for {
		select {
		case <-ctx.Done():
			return scoring.Result{}, ctx.Err()
		case <-tick.C:
		}
		j := srv.State().Jobs[sub.Job.ID]
		if j == nil || !proto.Terminal(j.Status) {
			if progress != nil && time.Since(lastShown) >= time.Second {
				lastShown = time.Now()
				qctx, qcancel := context.WithTimeout(ctx, time.Second)
				if info, err := srv.JobStatus(qctx, sub.Job.ID); err == nil && info.Score != nil {
					progress(*info.Score)
				}
				qcancel()
			}
			continue
		}
		if j.Status != proto.StatusCompleted {
			return scoring.Result{}, fmt.Errorf("scoring %s: %s", j.Status, j.Error)
		}
		var res scoring.Result
		b, err := os.ReadFile(filepath.Join(out, scoring.MetricsFile))
		if err == nil {
			err = json.Unmarshal(b, &res)
		}
		if err != nil {
			return scoring.Result{}, fmt.Errorf("read %s: %w", scoring.MetricsFile, err)
		}
		return res, nil
	}
}

// scoreProgress shows a scoring job's progress: a line rewritten in place
// on a terminal, a line every 10 s off one, a JSON record per second with
// --log-format json.
type scoreProgress struct {
	w         io.Writer
	tty, json bool
	log       *slog.Logger
	shown     bool
	lastPrint time.Time
}

func newScoreProgress(w io.Writer, json bool, log *slog.Logger) *scoreProgress {
	return &scoreProgress{w: w, tty: isTerminal(w), json: json, log: log}
}

func (p *scoreProgress) show(s proto.ScoreInfo) {
	if p.json {
		p.log.Info("scoring", "rows_done", s.RowsDone, "rows", s.RowsTotal, "batches_done", s.BatchesDone, "batches", s.BatchesTotal,
			"batches_in_flight", s.BatchesInFlight, "batches_retried", s.BatchesRetried, "rows_per_sec", s.RowsPerSec, "eta_s", s.ETASec)
		return
	}
	line := fmt.Sprintf("scored %d/%d rows  %d/%d batches  %.0f rows/s  ETA %s", s.RowsDone, s.RowsTotal, s.BatchesDone, s.BatchesTotal,
		s.RowsPerSec, (time.Duration(s.ETASec) * time.Second).String())
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.shown = true
		return
	}
	if time.Since(p.lastPrint) >= 10*time.Second {
		p.lastPrint = time.Now()
		fmt.Fprintln(p.w, line)
	}
}

func (p *scoreProgress) done() {
	if p.shown {
		fmt.Fprintln(p.w)
	}
}
