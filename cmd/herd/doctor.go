package main

import (
	"encoding/json"

	"github.com/urfave/cli/v2"

	"github.com/herdml/herd/internal/doctor"
)

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:  "doctor",
		Usage: "check this machine: libtorch, BLAS, threads, devices, stubbed ops",
		Description: "Loads libtorch the way training does and reports what it finds. " +
			"Exits 1 when libtorch cannot be loaded.",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
		Action: func(c *cli.Context) error {
			r, err := doctor.Collect()
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				if encErr := enc.Encode(r); encErr != nil {
					return encErr
				}
			} else {
				r.WriteText(c.App.Writer)
			}
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			return nil
		},
	}
}
