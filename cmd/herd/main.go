// Command herd fine-tunes large language models with LoRA and QLoRA, from
// one GPU to many machines. This package only wires flags to the packages
// that do the work; see DESIGN.md for the map.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/herdml/herd/internal/version"
)

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// run executes the CLI and returns the process exit status.
func run(args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	app.Reader = os.Stdin
	if err := app.Run(interleaveFlags(app, args)); err != nil {
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			if msg := err.Error(); msg != "" {
				fmt.Fprintln(stderr, "herd:", msg)
			}
			return ec.ExitCode()
		}
		fmt.Fprintln(stderr, "herd:", err)
		return 1
	}
	return 0
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:    "herd",
		Usage:   "fine-tune LLMs with LoRA/QLoRA on one GPU or many machines",
		Version: version.Get().String(),
		Writer:  stdout, ErrWriter: stderr,
		// Errors are printed once, by run.
		ExitErrHandler:  func(*cli.Context, error) {},
		HideHelpCommand: true,
		// --set lora.target_modules=[q_proj,v_proj] must stay one value.
		DisableSliceFlagSeparator: true,
		Flags:                     []cli.Flag{logFormatFlag},
		Commands: []*cli.Command{
			versionCommand(),
			doctorCommand(),
			configCommand(),
			tokenizeCommand(),
			modelCommand(),
			benchCommand(),
			coordCommand(),
			submitCommand(),
			statusCommand(),
			jobsCommand(),
			cancelCommand(),
			logsCommand(),
			workerCommand(),
			trainCommand(),
			fetchCommand(),
			scoreCommand(),
			datasetCommand(),
		},
	}
}
