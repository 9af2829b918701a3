// Package tests holds herd's end-to-end tests: they build bin/herd the way
// a user does and run it as separate processes.
package tests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// herdBin is the binary under test, built once by TestMain.
var herdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "herd-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	herdBin = filepath.Join(dir, "herd")
	build := exec.Command("go", "build", "-o", herdBin, "../cmd/herd")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build herd:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is one finished herd process.
type result struct {
	code           int
	stdout, stderr string
}

// herd runs the binary with args and extra environment, bounded in time.
func herd(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, herdBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("herd %v: %v", args, err)
		}
		r.code = ee.ExitCode()
	}
	t.Logf("herd %v -> exit %d\nstdout:\n%s\nstderr:\n%s", args, r.code, r.stdout, r.stderr)
	return r
}

// herdCmd prepares a herd command for tests that need stdin.
func herdCmd(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(herdBin, args...)
	cmd.Stderr = os.Stderr
	return cmd
}
