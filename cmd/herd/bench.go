package main

import (
	"encoding/json"

	"github.com/urfave/cli/v2"

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
