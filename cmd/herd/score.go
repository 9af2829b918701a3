package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/herdml/herd/configs"
	"github.com/herdml/herd/internal/scorerun"
	"github.com/herdml/herd/internal/torch"
	"github.com/herdml/herd/model/hub"
)

func scoreCommand() *cli.Command {
	return &cli.Command{
		Name:  "score",
		Usage: "score a data set with a model and optional adapter; writes predictions.jsonl and metrics.json",
		Description: "Single-node scoring: per-example loss (default), generation, or multiple choice. " +
			"Without --config the rows are completion-format {\"id\", \"text\"}; with --config its dataset " +
			"format and scoring section apply. predictions.jsonl follows the input order.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Required: true, Usage: "model directory or hub id"},
			&cli.StringFlag{Name: "adapter", Usage: "PEFT adapter directory"},
			&cli.StringFlag{Name: "data", Required: true, Usage: "rows to score: JSONL, JSON, CSV or Parquet"},
			&cli.StringFlag{Name: "out", Required: true, Usage: "output directory"},
			&cli.StringFlag{Name: "config", Usage: "run config whose dataset and scoring sections apply"},
			setFlag,
			&cli.StringFlag{Name: "task", Usage: "loss, generate, multiple_choice or classification (overrides scoring.task)"},
			&cli.StringFlag{Name: "device", Value: "cpu", Usage: "cpu or cuda:N"},
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
			log, err := newLogger(c, slog.LevelInfo)
			if err != nil {
				return err
			}
			res, err := scorerun.Run(c.Context, scorerun.Options{
				ModelDir: dir, AdapterDir: c.String("adapter"), Data: c.String("data"), Out: c.String("out"),
				Config: cfg, Device: dev, Log: log,
			})
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
