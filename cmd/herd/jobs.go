package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/urfave/cli/v2"

	"github.com/herdml/herd/configs"
	"github.com/herdml/herd/coordinator/live"
	"github.com/herdml/herd/internal/natsutil"
	"github.com/herdml/herd/internal/proto"
	"github.com/herdml/herd/model/hub"
	"github.com/herdml/herd/worker"
)

var timeoutFlag = &cli.DurationFlag{Name: "timeout", Value: 15 * time.Second, Usage: "how long to wait for a coordinator to answer"}

func dialCoord(url string, o natsutil.ConnectOptions) (*nats.Conn, error) {
	o.Name, o.Timeout = "herd-cli", 5*time.Second
	nc, err := natsutil.Connect(url, o)
	if err != nil {
		low := strings.ToLower(fmt.Sprint(errors.Unwrap(err)))
		switch {
		case strings.Contains(low, "authorization"):
			return nil, fmt.Errorf("the coordinators' NATS server at %s refused the connection: %v (pass --nats-user and --nats-password, or HERD_NATS_USER and HERD_NATS_PASSWORD)", url, errors.Unwrap(err))
		case strings.Contains(low, "tls") || strings.Contains(low, "x509") || strings.Contains(low, "certificate"):
			return nil, fmt.Errorf("TLS with the coordinators' NATS server at %s failed: %v (pass the CA that signed its certificate with --nats-ca, and a tls:// URL)", url, errors.Unwrap(err))
		}
		return nil, fmt.Errorf("cannot reach a coordinator at %s: %v (is `herd coord start` running there? check --coord or HERD_COORD)", url, errors.Unwrap(err))
	}
	return nc, nil
}

func describeCallErr(url string, err error) string {
	var pe *proto.Error
	switch {
	case errors.As(err, &pe):
		return pe.Error()
	case errors.Is(err, proto.ErrNoCoordinator):
		return fmt.Sprintf("no coordinator leader answered at %s (%v); is a majority of the coordinators running?", url, err)
	}
	return err.Error()
}

func submitCommand() *cli.Command {
	return &cli.Command{
		Name:      "submit",
		Usage:     "submit a training job (or, with --score, a scoring job) to the cluster; prints the job id",
		ArgsUsage: "CONFIG",
		Description: "Relative paths in the config (model.path, dataset files, output_dir) are made absolute here: " +
			"the workers must see them under the same paths (a shared file system). With --score the job scores " +
			"scoring.data (default dataset.eval) with model.path and --adapter, fanned out to the workers; the " +
			"coordinators read the data file too (to plan the batches), and predictions.jsonl and metrics.json go " +
			"to output_dir/scoring.",
		Flags: withNATS(coordFlag, tokenFlag, setFlag, timeoutFlag,
			&cli.BoolFlag{Name: "skip-path-check", Usage: "do not check here that the model and data files exist (when only the workers see them)"},
			&cli.BoolFlag{Name: "score", Usage: "submit a scoring job instead of a training job"},
			&cli.StringFlag{Name: "adapter", Usage: "with --score: PEFT adapter directory (default: the base model)"}),
		Action: func(c *cli.Context) error {
			path, err := oneArg(c, "CONFIG")
			if err != nil {
				return err
			}
			cfg, err := configs.Load(path, c.StringSlice("set"))
			if err != nil {
				return configProblems(c, err)
			}
			if err := absPaths(cfg, !c.Bool("skip-path-check")); err != nil {
				return cli.Exit(err.Error(), 1)
			}
			yaml, err := cfg.YAML()
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			req := proto.SubmitRequest{ConfigYAML: string(yaml), Name: cfg.RunName}
			if c.Bool("score") {
				req.Score = true
				if a := c.String("adapter"); a != "" {
					if req.Adapter, err = filepath.Abs(a); err != nil {
						return cli.Exit(err.Error(), 1)
					}
				}
				if cfg.Scoring.Data == "" {
					return cli.Exit("--score: no data to score: set scoring.data or dataset.eval", 2)
				}
				if _, err := os.Stat(cfg.Scoring.Data); err != nil && !c.Bool("skip-path-check") {
					return cli.Exit(fmt.Sprintf("scoring.data: %v", err), 1)
				}
			} else if c.IsSet("adapter") {
				return cli.Exit("--adapter goes with --score", 2)
			}
			var res proto.SubmitResult
			if err := apiCall(c, proto.SubjectSubmit, req, &res); err != nil {
				return err
			}
			fmt.Fprintln(c.App.Writer, res.Job.ID)
			return nil
		},
	}
}

// absPaths makes the config's file paths absolute and, with check, makes
// sure the model and data exist.
func absPaths(cfg *configs.Config, check bool) error {
	abs := func(p *string) error {
		if *p == "" || filepath.IsAbs(*p) {
			return nil
		}
		a, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = a
		return nil
	}
	if isLocalModel(cfg.Model.Path) {
		if err := abs(&cfg.Model.Path); err != nil {
			return err
		}
	}
	for _, p := range []*string{&cfg.Dataset.Train, &cfg.Dataset.Eval, &cfg.Scoring.Data, &cfg.OutputDir} {
		if err := abs(p); err != nil {
			return err
		}
	}
	if !check {
		return nil
	}
	if _, err := hub.Resolve(cfg.Model.Path, cfg.Model.Revision); err != nil && isLocalModel(cfg.Model.Path) {
		return fmt.Errorf("model.path: %v (make a tiny one with `herd model init-tiny --out DIR`, or fetch one with `herd model pull ORG/NAME`)", err)
	}
	for name, p := range map[string]string{"dataset.train": cfg.Dataset.Train, "dataset.eval": cfg.Dataset.Eval} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%s: %v", name, err)
		}
	}
	return nil
}

// isLocalModel says whether model.path names a directory rather than a hub
// id (ORG/NAME).
func isLocalModel(p string) bool {
	if _, err := os.Stat(p); err == nil {
		return true
	}
	return !hub.ValidRepoID(p) || strings.HasPrefix(p, ".") || strings.HasPrefix(p, "/")
}

func jobsCommand() *cli.Command {
	return &cli.Command{
		Name:  "jobs",
		Usage: "list the cluster's jobs",
		Flags: withNATS(coordFlag, tokenFlag, timeoutFlag, &cli.BoolFlag{Name: "json", Usage: "print JSON"}),
		Action: func(c *cli.Context) error {
			var res proto.JobsResult
			if err := apiCall(c, proto.SubjectJobs, proto.JobsRequest{}, &res); err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, res.Jobs)
			}
			printJobTable(c.App.Writer, res.Jobs)
			return nil
		},
	}
}

func printJobTable(w io.Writer, jobs []proto.JobInfo) {
	if len(jobs) == 0 {
		fmt.Fprintln(w, "no jobs")
		return
	}
	fmt.Fprintf(w, "%-10s %-20s %-10s %-11s %-8s %-6s %s\n", "JOB", "NAME", "STATUS", "STEP", "LOSS", "WORLD", "SUBMITTED")
	for _, j := range jobs {
		fmt.Fprintf(w, "%-10s %-20s %-10s %-11s %-8.4f %-6d %s\n", j.ID, j.Name, j.Status, fmt.Sprintf("%d/%d", j.Step, j.TotalSteps),
			j.Loss, len(j.Members), j.SubmittedAt.Local().Format("2006-01-02 15:04:05"))
	}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show a job, or the whole cluster (coordinators, workers, jobs)",
		ArgsUsage: "[JOB]",
		Flags:     withNATS(coordFlag, tokenFlag, timeoutFlag, &cli.BoolFlag{Name: "json", Usage: "print JSON"}),
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				return cli.Exit("status expects at most one argument, JOB", 2)
			}
			var res proto.StatusResult
			if err := apiCall(c, proto.SubjectStatus, proto.StatusRequest{Job: c.Args().First()}, &res); err != nil {
				return err
			}
			w := c.App.Writer
			if j := res.Job; j != nil {
				if c.Bool("json") {
					j.ConfigYAML = ""
					return printJSON(w, j)
				}
				return live.WriteJob(w, j)
			}
			if c.Bool("json") {
				return printJSON(w, res.Cluster)
			}
			ci := res.Cluster
			fmt.Fprintf(w, "coordinators (leader %s):\n", ci.Leader)
			for _, s := range ci.Servers {
				fmt.Fprintf(w, "  %s %s\n", s.ID, s.RaftAddr)
			}
			fmt.Fprintf(w, "workers (%d):\n", len(ci.Workers))
			for _, wk := range ci.Workers {
				health := "alive"
				if !wk.Alive {
					health = "lost"
				}
				if !wk.ExcludedUntil.IsZero() {
					health += ", cool-down until " + wk.ExcludedUntil.Local().Format("15:04:05")
				}
				fmt.Fprintf(w, "  %-16s %-8s %-10s %-9s job=%s step=%d failures=%d %s\n", wk.ID, wk.Device, health, wk.State, orDash(wk.Job), wk.Step, wk.Failures, wk.Host)
			}
			fmt.Fprintln(w, "jobs:")
			printJobTable(w, ci.Jobs)
			return nil
		},
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cancelCommand() *cli.Command {
	return &cli.Command{
		Name:      "cancel",
		Usage:     "cancel a job",
		ArgsUsage: "JOB",
		Flags:     withNATS(coordFlag, tokenFlag, timeoutFlag),
		Action: func(c *cli.Context) error {
			id, err := oneArg(c, "JOB")
			if err != nil {
				return err
			}
			var j proto.JobInfo
			if err := apiCall(c, proto.SubjectCancel, proto.CancelRequest{Job: id}, &j); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "%s %s\n", j.ID, j.Status)
			return nil
		},
	}
}

func logsCommand() *cli.Command {
	return &cli.Command{
		Name:      "logs",
		Usage:     "print a job's log: events and per-step statistics",
		ArgsUsage: "JOB",
		Flags: withNATS(coordFlag, tokenFlag, timeoutFlag,
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing until the job ends"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object per entry"}),
		Action: func(c *cli.Context) error {
			id, err := oneArg(c, "JOB")
			if err != nil {
				return err
			}
			var after uint64
			for {
				var res proto.LogsResult
				if err := apiCall(c, proto.SubjectLogs, proto.LogsRequest{Job: id, After: after}, &res); err != nil {
					return err
				}
				for _, e := range res.Entries {
					after = e.Seq
					if c.Bool("json") {
						b, _ := json.Marshal(e)
						fmt.Fprintln(c.App.Writer, string(b))
						continue
					}
					fmt.Fprintln(c.App.Writer, formatLog(e))
				}
				if len(res.Entries) > 0 {
					continue // there may be more
				}
				if !c.Bool("follow") || proto.Terminal(res.Status) {
					return nil
				}
				select {
				case <-c.Context.Done():
					return nil
				case <-time.After(500 * time.Millisecond):
				}
			}
		},
	}
}

func formatLog(e proto.LogEntry) string {
	ts := e.Time.Local().Format("15:04:05.000")
	if s := e.Step; s != nil {
		line := fmt.Sprintf("%s step %d/%d loss %.4f lr %.3g grad_norm %.3g tokens %d world %d %.0f ms (all-reduce %.1f ms) %.0f tok/s",
			ts, s.Step, s.TotalSteps, s.Loss, s.LR, s.GradNorm, s.Tokens, s.World, s.StepMs, s.AllReduceMs, s.TokensPerSec)
		if s.EvalTokens > 0 {
			line += fmt.Sprintf(" eval_loss %.4f (%d tokens, %.0f ms)", s.EvalLoss, s.EvalTokens, s.EvalMs)
		}
		return line
	}
	return fmt.Sprintf("%s %s", ts, e.Message)
}

func fetchCommand() *cli.Command {
	return &cli.Command{
		Name:      "fetch",
		Usage:     "copy a job's adapter (or a checkpoint) out of the coordinators' object store",
		ArgsUsage: "JOB",
		Description: "For jobs whose workers keep checkpoints in the JetStream object store (--checkpoint-store nats). " +
			"Writes the PEFT adapter, optimizer and trainer state files to --out.",
		Flags: withNATS(coordFlag, tokenFlag, timeoutFlag,
			&cli.StringFlag{Name: "out", Required: true, Usage: "directory to write"},
			&cli.IntFlag{Name: "step", Usage: "the checkpoint of this step (default: the final adapter, else the latest checkpoint)"}),
		Action: func(c *cli.Context) error {
			id, err := oneArg(c, "JOB")
			if err != nil {
				return err
			}
			var res proto.StatusResult
			if err := apiCall(c, proto.SubjectStatus, proto.StatusRequest{Job: id}, &res); err != nil {
				return err
			}
			j := res.Job
			ref := j.Adapter
			if step := c.Int("step"); step > 0 || ref == "" {
				ref = ""
				for _, cp := range j.Checkpoints {
					if step == 0 || cp.Step == step {
						ref = cp.Path
					}
				}
			}
			if ref == "" {
				return cli.Exit(fmt.Sprintf("job %s has no such checkpoint (see `herd status %s`)", id, id), 1)
			}
			if !worker.IsObjectRef(ref) {
				return cli.Exit(fmt.Sprintf("%s is on the workers' file system, not in the object store: copy it from there", ref), 1)
			}
			nc, err := dialCoord(c.String("coord"), natsClientOptions(c))
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			defer nc.Close()
			if err := worker.DownloadCheckpoint(nc, ref, c.String("out")); err != nil {
				return cli.Exit(err.Error(), 1)
			}
			fmt.Fprintf(c.App.Writer, "%s -> %s\n", ref, c.String("out"))
			return nil
		},
	}
}
