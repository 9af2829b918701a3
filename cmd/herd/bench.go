package main

import (
	"encoding/json"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/herdml/herd/collective/bench"
	"github.com/herdml/herd/configs"
	"github.com/herdml/herd/internal/engine"
	"github.com/herdml/herd/internal/torch"
	"github.com/herdml/herd/model/hub"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure herd's speed; prints JSON",
		Subcommands: []*cli.Command{
			benchAllReduceCommand(),
			benchScoreCommand(),
			{
				// Started by `herd bench allreduce` once per member process.
				Name:   "allreduce-member",
				Hidden: true,
				Action: func(c *cli.Context) error {
					return bench.Member(c.Context, os.Stdin, c.App.Writer)
				},
			},
			{
				Name:  "train",
				Usage: "time LoRA training steps of a config's model on random tokens",
				Description: "Runs full steps (forward, backward, flat gradient, AdamW) with the config's " +
					"micro_batch_size and max_seq_len and prints tokens/s, step time and memory.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "config", Required: true, Usage: "run config (YAML)"},
					setFlag,
					&cli.IntFlag{Name: "steps", Value: 50, Usage: "timed steps"},
					&cli.IntFlag{Name: "warmup", Value: 5, Usage: "untimed steps first"},
					&cli.StringFlag{Name: "device", Value: "cpu", Usage: "cpu or cuda:N"},
				},
				Action: func(c *cli.Context) error {
					cfg, err := configs.Load(c.String("config"), c.StringSlice("set"))
					if err != nil {
						return configProblems(c, err)
					}
					dev, err := torch.ParseDevice(c.String("device"))
					if err != nil {
						return cli.Exit(err.Error(), 2)
					}
					dir, err := hub.Resolve(cfg.Model.Path, cfg.Model.Revision)
					if err != nil {
						return cli.Exit(err.Error(), 1)
					}
					steps, warmup := c.Int("steps"), c.Int("warmup")
					set, err := engine.SettingsFromConfig(cfg, dev, steps+warmup)
					if err != nil {
						return cli.Exit(err.Error(), 1)
					}
					e, err := engine.New(dir, set)
					if err != nil {
						return cli.Exit(err.Error(), 1)
					}
					defer e.Close()
					res, err := e.Bench(cfg.Training.MicroBatchSize, cfg.Dataset.MaxSeqLen, warmup, steps)
					if err != nil {
						return cli.Exit(err.Error(), 1)
					}
					enc := json.NewEncoder(c.App.Writer)
					enc.SetIndent("", "  ")
					return enc.Encode(res)
				},
			},
		},
	}
}

func benchAllReduceCommand() *cli.Command {
	return &cli.Command{
		Name:  "allreduce",
		Usage: "time all-reduce of a float32 buffer across N members over NATS",
		Description: "Members run as separate processes (or goroutines with --in-process) against an embedded " +
			"NATS server or --nats URL. Prints JSON with time per call, algbw and busbw as nccl-tests define " +
			"them: algbw = bytes / time, busbw = algbw × 2(N−1)/N.",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "workers", Value: 4, Usage: "members"},
			&cli.Int64Flag{Name: "size", Value: 16 << 20, Usage: "buffer size in bytes (a multiple of 4)"},
			&cli.StringFlag{Name: "nats", Usage: "NATS URL; empty starts an embedded server"},
			&cli.IntFlag{Name: "max-payload", Value: 8 << 20, Usage: "max_payload of the embedded server"},
			&cli.StringFlag{Name: "algorithm", Value: "auto", Usage: "auto, rsag or direct"},
			&cli.StringFlag{Name: "compression", Value: "none", Usage: "none, bf16 or fp16"},
			&cli.StringFlag{Name: "transport", Usage: "members' NATS client: raw (collective's own) or nats (nats.go); default raw unless TLS, nkeys or creds are configured"},
			&cli.IntFlag{Name: "chunk-bytes", Usage: "bytes per message (0: auto, at most 2 MiB, smaller for large groups; capped by max_payload)"},
			&cli.IntFlag{Name: "iters", Value: 20, Usage: "timed calls"},
			&cli.IntFlag{Name: "warmup", Value: 3, Usage: "untimed calls first"},
			&cli.DurationFlag{Name: "timeout", Value: 60 * time.Second, Usage: "bound on one call"},
			&cli.BoolFlag{Name: "in-process", Usage: "members as goroutines instead of processes"},
			&cli.IntFlag{Name: "kill-rank", Value: -1, Usage: "fault injection: rank to kill"},
			&cli.IntFlag{Name: "kill-after", Usage: "fault injection: kill at this timed call"},
		},
		Action: func(c *cli.Context) error {
			o := bench.Options{
				Workers: c.Int("workers"), SizeBytes: c.Int64("size"), NATSURL: c.String("nats"),
				MaxPayload: int32(c.Int("max-payload")), Algorithm: c.String("algorithm"), Compression: c.String("compression"), Transport: c.String("transport"),
				ChunkBytes: c.Int("chunk-bytes"), Iters: c.Int("iters"), Warmup: c.Int("warmup"), Timeout: c.Duration("timeout"),
				KillRank: c.Int("kill-rank"), KillAfter: c.Int("kill-after"),
			}
			if !c.Bool("in-process") {
				exe, err := os.Executable()
				if err != nil {
					return cli.Exit(err.Error(), 1)
				}
				o.Exec = []string{exe, "bench", "allreduce-member"}
			}
			res, err := bench.Run(c.Context, o)
			if res != nil {
				// One line per run: scripts collect runs as JSON lines.
				if encErr := json.NewEncoder(c.App.Writer).Encode(res); encErr != nil {
					return encErr
				}
			}
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			return nil
		},
	}
}
