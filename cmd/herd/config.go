package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/herdml/herd/configs"
)

var setFlag = &cli.StringSliceFlag{
	Name:  "set",
	Usage: "override a config field, e.g. --set training.lr=1e-4 (repeatable)",
}

func configCommand() *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "check and show run configurations",
		Subcommands: []*cli.Command{
			{
				Name:      "validate",
				Usage:     "report every problem in a config file, with its line and field",
				ArgsUsage: "FILE",
				Flags:     []cli.Flag{setFlag},
				Action: func(c *cli.Context) error {
					path, err := oneArg(c, "FILE")
					if err != nil {
						return err
					}
					if _, err := configs.Load(path, c.StringSlice("set")); err != nil {
						return configProblems(c, err)
					}
					fmt.Fprintf(c.App.Writer, "%s: ok\n", path)
					return nil
				},
			},
			{
				Name:      "show",
				Usage:     "print the effective config: defaults, file and --set overrides",
				ArgsUsage: "FILE",
				Flags:     []cli.Flag{setFlag},
				Action: func(c *cli.Context) error {
					path, err := oneArg(c, "FILE")
					if err != nil {
						return err
					}
					cfg, err := configs.Load(path, c.StringSlice("set"))
					if err != nil {
						return configProblems(c, err)
					}
					out, err := cfg.YAML()
					if err != nil {
						return err
					}
					_, err = c.App.Writer.Write(out)
					return err
				},
			},
		},
	}
}

// configProblems prints each problem of a config on its own line and exits 1.
func configProblems(c *cli.Context, err error) error {
	problems := configs.Problems(err)
	if len(problems) == 0 {
		return cli.Exit(err.Error(), 1)
	}
	for _, p := range problems {
		fmt.Fprintln(c.App.ErrWriter, p)
	}
	return cli.Exit(fmt.Sprintf("%d problem(s) in the config", len(problems)), 1)
}

func oneArg(c *cli.Context, name string) (string, error) {
	if c.NArg() != 1 {
		return "", cli.Exit(fmt.Sprintf("%s expects one argument, %s (got %d)", c.Command.FullName(), name, c.NArg()), 2)
	}
	return c.Args().First(), nil
}
