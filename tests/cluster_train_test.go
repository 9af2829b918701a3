package tests

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestClusterTrainSingleNode: `herd train` runs the cluster's code path in
// one process; Ctrl-C checkpoints and stops, --resume continues, and the
// result equals an uninterrupted run. With --log-format json every step is
// a JSON record.
func TestClusterTrainSingleNode(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, filepath.Join(dir, "unused"), 40, 2, 4, "")

	refOut := filepath.Join(dir, "ref")
	r := herd(t, nil, "--log-format", "json", "train", cfg, "--set", "output_dir="+refOut, "--log-level", "info")
	if r.code != 0 || !strings.Contains(r.stdout, "adapter: "+filepath.Join(refOut, "checkpoints", "checkpoint-40")) {
		t.Fatalf("train: exit %d, stdout %q", r.code, r.stdout)
	}
	steps := 0
	sc := bufio.NewScanner(strings.NewReader(r.stderr))
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "step" {
			steps++
			if _, ok := rec["loss"].(float64); !ok {
				t.Fatalf("step record without loss: %s", sc.Text())
			}
		}
	}
	if steps != 40 {
		t.Fatalf("%d JSON step records, want 40", steps)
	}

	// Interrupt a run, then resume it.
	out := filepath.Join(dir, "run")
	p := start(t, "train", []string{stepDelayEnv}, "train", cfg, "--set", "output_dir="+out)
	waitFor(t, 30*time.Second, func() error {
		_, err := os.Stat(filepath.Join(out, "checkpoints", "checkpoint-10"))
		return err
	})
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if !p.exitedWithin(30 * time.Second) {
		t.Fatal("herd train did not stop after Ctrl-C")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 130 || !strings.Contains(p.out.String(), "resume with: herd train") {
		t.Fatalf("interrupted train: exit %d\n%s", code, p.out.String())
	}
	// Without --resume the unfinished run is not overwritten.
	if r := herd(t, nil, "train", cfg, "--set", "output_dir="+out); r.code != 1 || !strings.Contains(r.stderr, "--resume") {
		t.Fatalf("train over an unfinished run: exit %d", r.code)
	}
	r = herd(t, nil, "train", cfg, "--set", "output_dir="+out, "--resume")
	if r.code != 0 || !strings.Contains(r.stderr, "resuming job-1 from step") {
		t.Fatalf("resume: exit %d", r.code)
	}
	d := maxDiff(t, readAdapter(t, filepath.Join(refOut, "checkpoints", "checkpoint-40")), readAdapter(t, filepath.Join(out, "checkpoints", "checkpoint-40")))
	t.Logf("max |resumed - uninterrupted| = %.3g", d)
	if d > equivTolerance {
		t.Fatalf("the resumed run differs from the uninterrupted one by %g", d)
	}
}
