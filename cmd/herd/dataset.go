package main

import (
	"github.com/urfave/cli/v2"

	"github.com/herdml/herd/configs"
	"github.com/herdml/herd/dataset"
	"github.com/herdml/herd/model/hub"
)

func datasetCommand() *cli.Command {
	return &cli.Command{
		Name:  "dataset",
		Usage: "look at data sets the way training sees them",
		Subcommands: []*cli.Command{
			{
				Name:      "inspect",
				Usage:     "show a few formatted examples with trained tokens marked, and length statistics",
				ArgsUsage: "FILE",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "config", Required: true, Usage: "run config (dataset section and model tokenizer)"},
					setFlag,
					&cli.IntFlag{Name: "examples", Aliases: []string{"n"}, Value: 3, Usage: "examples to show"},
					&cli.StringFlag{Name: "tokenizer", Usage: "tokenizer.json or model directory (default: model.path)"},
				},
				Action: func(c *cli.Context) error {
					file, err := oneArg(c, "FILE")
					if err != nil {
						return err
					}
					cfg, err := configs.Load(c.String("config"), c.StringSlice("set"))
					if err != nil {
						return configProblems(c, err)
					}
					path := c.String("tokenizer")
					if path == "" {
						if path, err = hub.Resolve(cfg.Model.Path, cfg.Model.Revision); err != nil {
							return cli.Exit(err.Error(), 1)
						}
					}
					tok, _, err := dataset.LoadTokenizer(path)
					if err != nil {
						return cli.Exit(err.Error(), 1)
					}
					if err := dataset.Inspect(c.App.Writer, cfg, tok, file, c.Int("examples")); err != nil {
						return cli.Exit(err.Error(), 1)
					}
					return nil
				},
			},
		},
	}
}
