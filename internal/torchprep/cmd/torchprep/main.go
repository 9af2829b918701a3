// Command torchprep prepares gotch for this machine's libtorch and wires it
// into the build with a go.work file. make runs it before anything that
// links libtorch; it returns at once when nothing changed.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"

	"github.com/herdml/herd/internal/torchprep"
)

// gotchModule is the gotch release herd's bindings come from.
const gotchModule, gotchVersion = "github.com/sugarme/gotch", "v0.9.1"

func main() {
	out := flag.String("out", ".build/torch", "directory for the prepared build (gitignored)")
	gowork := flag.String("gowork", "go.work", "go.work file to write")
	jobs := flag.Int("jobs", runtime.NumCPU(), "parallel compiler processes")
	csrc := flag.String("csrc", "internal/torch/csrc", "directory of herd's own C++ sources")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *out, *gowork, *csrc, *jobs); err != nil {
		fmt.Fprintf(os.Stderr, "torchprep: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out, gowork, csrc string, jobs int) error {
	lt, err := torchprep.EnsureLibtorch(ctx, os.Stderr)
	if err != nil {
		return err
	}
	if err := torchprep.EnsureFastBLAS(ctx, lt, os.Stderr); err != nil {
		return err
	}
	gotchDir, err := moduleDir(ctx, gotchModule, gotchVersion)
	if err != nil {
		return err
	}
	extra, err := filepath.Glob(filepath.Join(csrc, "*.cpp"))
	if err != nil {
		return err
	}
	for i := range extra {
		if extra[i], err = filepath.Abs(extra[i]); err != nil {
			return err
		}
	}
	absOut, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	res, err := torchprep.Prepare(ctx, lt, torchprep.Options{
		OutDir:       absOut,
		GotchDir:     gotchDir,
		GotchVersion: gotchVersion,
		ExtraSources: extra,
		Jobs:         jobs,
		Log:          os.Stderr,
	})
	if err != nil {
		return err
	}
	if err := torchprep.WriteGoWork(gowork, gotchModule, gotchVersion, res.GotchCopy); err != nil {
		return err
	}
	state := "prepared"
	if res.UpToDate {
		state = "up to date"
	}
	cuda := "CPU"
	if lt.CUDA {
		cuda = "CUDA"
	}
	fmt.Fprintf(os.Stderr, "torchprep: %s: libtorch %s (%s, %s) from %s; %d of %d ops stubbed; %s\n",
		state, lt.Version, cuda, lt.LibDir, lt.Source, len(res.Stubbed), res.Wrappers, res.LibPath)
	return nil
}

// moduleDir downloads a module through the Go proxy and returns its
// directory in the module cache.
func moduleDir(ctx context.Context, path, version string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "mod", "download", "-json", path+"@"+version).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return "", fmt.Errorf("go mod download %s@%s: %w\n%s%s", path, version, err, ee.Stderr, out)
		}
		return "", fmt.Errorf("go mod download %s@%s: %w", path, version, err)
	}
	var m struct{ Dir, Error string }
	if err := json.Unmarshal(out, &m); err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %w", path, version, err)
	}
	if m.Error != "" || m.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: %s", path, version, m.Error)
	}
	return m.Dir, nil
}
