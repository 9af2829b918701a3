package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/herdml/herd/internal/proto"
	"github.com/herdml/herd/worker"
	"github.com/herdml/herd/worker/torchengine"
)

func workerCommand() *cli.Command {
	return &cli.Command{
		Name:  "worker",
		Usage: "run training workers",
		Subcommands: []*cli.Command{{
			Name:  "join",
			Usage: "join the cluster as one worker per device; runs until interrupted",
			Description: "Registers with the coordinators, heartbeats, and trains the jobs it is assigned. " +
				"Several devices (--devices cuda:0,cuda:1) form one worker that spreads its micro-batches over them " +
				"and sums their gradients locally before the network; --worker-per-device runs one worker per device " +
				"instead (named ID-0, ID-1, ...).",
			Flags: append(withNATS(coordFlag, tokenFlag,
				&cli.StringFlag{Name: "devices", Value: "cpu", Usage: "cpu or cuda:N[,cuda:M...]"},
				&cli.BoolFlag{Name: "worker-per-device", Usage: "one worker per device instead of one worker over all of them"},
				&cli.StringFlag{Name: "id", Usage: "worker id (default: host name and process id)"},
				&cli.StringFlag{Name: "cache-dir", Usage: "cache tokenized data here (default: in memory)"},
				&cli.StringFlag{Name: "checkpoint-store", Value: "files", Usage: "files (output_dir on a shared file system) or nats (the coordinators' JetStream object store)"},
				&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
			), telemetryFlags...),
			Action: workerJoin,
		}},
	}
}

// testFault reads a fault-injection variable (tests only, undocumented for
// users): HERD_TEST_FAIL_AT_STEP (the engine returns an error at that
// step, once), HERD_TEST_KILL_AT_STEP (the process SIGKILLs itself at that
// step), HERD_TEST_STEP_DELAY_MS (sleep before every step). 0 when unset.
func testFault(name string) int {
	n, _ := strconv.Atoi(os.Getenv(name))
	return n
}

// defaultWorkerID is the host name (letters, digits, '-' kept) and the pid.
func defaultWorkerID() string {
	h, _ := os.Hostname()
	var b strings.Builder
	for _, r := range h {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	s := strings.Trim(b.String(), "-_")
	if s == "" {
		s = "worker"
	}
	return fmt.Sprintf("%s-%d", s, os.Getpid())
}

func workerJoin(c *cli.Context) error {
	level, err := parseLevel(c.String("log-level"))
	if err != nil {
		return err
	}
	log, err := newLogger(c, level)
	if err != nil {
		return err
	}
	if c.String("token") == "" {
		return cli.Exit("no join token: pass --token or set HERD_TOKEN (the --token the coordinators were started with)", 2)
	}
	devices := splitList([]string{c.String("devices")})
	if len(devices) == 0 {
		return cli.Exit("--devices: name at least one device (cpu or cuda:N)", 2)
	}
	id := c.String("id")
	if id == "" {
		id = defaultWorkerID()
	}
	if !c.Bool("worker-per-device") {
		devices = []string{strings.Join(devices, ",")}
	}
	// One process, one service.instance.id: the workers of a process
	// (--worker-per-device) tell themselves apart by herd.worker.
	tel, closeTel, err := setupTelemetry(c, "herd-worker", id, log)
	if err != nil {
		return err
	}
	defer closeTel()
	var ws []*worker.Worker
	defer func() {
		for _, w := range ws {
			w.Close()
		}
	}()
	for i, dev := range devices {
		wid := id
		if len(devices) > 1 {
			wid = fmt.Sprintf("%s-%d", id, i)
		}
		w, err := worker.New(worker.Config{
			ID: wid, Device: dev, URL: c.String("coord"), Token: c.String("token"), Connect: natsClientOptions(c),
			CheckpointStore: c.String("checkpoint-store"),
			NewEngine:       torchengine.New, NewScorer: torchengine.NewScorer, LoadData: worker.LoadDataset(c.String("cache-dir")),
			FailAtStep: testFault("HERD_TEST_FAIL_AT_STEP"), KillAtStep: testFault("HERD_TEST_KILL_AT_STEP"),
			StepDelay: time.Duration(testFault("HERD_TEST_STEP_DELAY_MS")) * time.Millisecond,
			Logger:    log, Telemetry: tel,
		})
		if err != nil {
			return cli.Exit(err.Error(), 1)
		}
		ws = append(ws, w)
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	errs := make([]error, len(ws))
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Go(func() {
			errs[i] = w.Run(ctx)
			if errs[i] != nil {
				stop()
			}
		})
	}
	fmt.Fprintf(c.App.Writer, "worker %s joined %s with %s\n", id, c.String("coord"), strings.Join(devices, ","))
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		if errors.Is(err, worker.ErrBadToken) {
			return cli.Exit(err.Error()+" (pass the cluster's token with --token or HERD_TOKEN)", 1)
		}
		return cli.Exit(err.Error(), 1)
	}
	lctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for _, w := range ws {
		if err := w.Leave(lctx); err != nil && !proto.IsCode(err, proto.CodeNotFound) {
			log.Warn("leave", "worker", w.ID(), "err", err)
		}
	}
	log.Info("worker stopped", "id", id)
	return nil
}
