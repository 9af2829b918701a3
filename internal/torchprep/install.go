package torchprep

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// EnsureLibtorch finds libtorch and, where none is found and this process
// may, installs Debian's libtorch-dev with the OpenMP OpenBLAS.
func EnsureLibtorch(ctx context.Context, log io.Writer) (*Libtorch, error) {
	lt, err := Find(ctx)
	if err == nil {
		return lt, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if !IsDebian() || !IsRoot() {
		return nil, fmt.Errorf("%w: set LIBTORCH to a libtorch directory, install PyTorch for python3, or run:\n  %s", err, InstallCommand)
	}
	fmt.Fprintln(log, "torchprep: libtorch not found; installing Debian's libtorch-dev and libopenblas0-openmp")
	if err := apt(ctx, log, "update"); err != nil {
		return nil, err
	}
	if err := apt(ctx, log, "install", "-y", "--no-install-recommends", "libtorch-dev", "libopenblas0-openmp"); err != nil {
		return nil, err
	}
	return Find(ctx)
}

func apt(ctx context.Context, log io.Writer, args ...string) error {
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("apt-get %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// BLAS flavours libblas.so.3 can resolve to on Debian.
const (
	BLASReference      = "reference"
	BLASOpenBLASOpenMP = "openblas-openmp"
	BLASOpenBLASThread = "openblas-pthread"
	BLASOther          = "other"
)

// ClassifyBLAS names the BLAS a resolved libblas.so.3 path belongs to.
func ClassifyBLAS(resolved string) string {
	switch {
	case strings.Contains(resolved, "/openblas-openmp/"):
		return BLASOpenBLASOpenMP
	case strings.Contains(resolved, "/openblas-pthread/"):
		return BLASOpenBLASThread
	case strings.Contains(resolved, "/blas/") || strings.HasSuffix(resolved, "/libblas.so.3.11.0"):
		return BLASReference
	default:
		return BLASOther
	}
}

// EnsureFastBLAS makes Debian's libtorch use the OpenMP OpenBLAS: with the
// reference BLAS a LoRA step is about 25x slower, and the pthread OpenBLAS
// fights libtorch's OpenMP threads. Other libtorch builds bring their own
// BLAS and are left alone.
func EnsureFastBLAS(ctx context.Context, lt *Libtorch, log io.Writer) error {
	if lt.LibDir != debianLibDir {
		return nil
	}
	link := filepath.Join(debianLibDir, "libblas.so.3")
	resolved, _ := filepath.EvalSymlinks(link)
	openmp := filepath.Join(debianLibDir, "openblas-openmp")
	if !IsDebian() || !IsRoot() {
		if ClassifyBLAS(resolved) == BLASOpenBLASOpenMP {
			return nil
		}
		fmt.Fprintf(log, "torchprep: warning: libtorch uses %s (%s BLAS); for a fast one run:\n  sudo apt-get install -y libopenblas0-openmp && sudo update-alternatives --set libblas.so.3-%s-linux-gnu %s/libblas.so.3\n",
			resolved, ClassifyBLAS(resolved), debianMultiarch(), openmp)
		return nil
	}
	if !exists(filepath.Join(openmp, "libblas.so.3")) {
		fmt.Fprintln(log, "torchprep: installing libopenblas0-openmp (libtorch's BLAS)")
		if err := apt(ctx, log, "install", "-y", "--no-install-recommends", "libopenblas0-openmp"); err != nil {
			if err2 := apt(ctx, log, "update"); err2 != nil {
				return err
			}
			if err := apt(ctx, log, "install", "-y", "--no-install-recommends", "libopenblas0-openmp"); err != nil {
				return err
			}
		}
	}
	// Selected in manual mode even when it is already the automatic choice:
	// a later package (numpy pulls the pthread OpenBLAS, priority 100 over
	// OpenMP's 95) would otherwise switch it back.
	// libtorch_cpu also links libopenblas.so.0 directly, a group of its own.
	for _, lib := range []string{"libblas.so.3", "liblapack.so.3", "libopenblas.so.0"} {
		alt := fmt.Sprintf("%s-%s-linux-gnu", lib, debianMultiarch())
		target := filepath.Join(openmp, lib)
		if !exists(target) {
			continue
		}
		out, err := exec.CommandContext(ctx, "update-alternatives", "--set", alt, target).CombinedOutput()
		if err != nil {
			return fmt.Errorf("update-alternatives --set %s %s: %w\n%s", alt, target, err, out)
		}
	}
	if now, _ := filepath.EvalSymlinks(link); now != resolved {
		fmt.Fprintf(log, "torchprep: libblas.so.3 now resolves to %s\n", now)
	}
	return nil
}
