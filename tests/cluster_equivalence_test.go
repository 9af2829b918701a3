package tests

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/herdml/herd/internal/proto"
)

// equivTolerance bounds the element-wise difference between adapters
// trained with different world sizes: the sums of the same gradients in
// another order, in fp32.
const equivTolerance = 1e-5

// runJob trains cfg on a fresh one-coordinator cluster with `workers`
// worker processes and returns the final adapter directory.
func runJob(t *testing.T, cfg string, workers int, sets ...string) (proto.JobInfo, string) {
	t.Helper()
	c := startCluster(t, 1)
	for i := range workers {
		c.worker(fmt.Sprintf("w%d", i))
	}
	sets = append(sets, fmt.Sprintf("cluster.workers=%d", workers))
	id := c.submit(cfg, sets...)
	j := c.waitJob(id, 60*time.Second, func(j proto.JobInfo) bool { return j.Status == proto.StatusCompleted })
	if j.Restarts != 0 {
		// Not an error (the result must be the same), but worth knowing:
		// a worker starved of CPU for longer than its liveness window.
		t.Logf("job %s re-formed its group %d time(s): members %v", id, j.Restarts, j.Members)
	}
	return j, j.Adapter
}

// TestClusterDataParallelEquivalence trains the same config with 1, 2 and 3
// worker processes, with gradient accumulation (micro-batches of 2 in a
// global batch of 12) and without (one micro-batch per worker), and checks
// that every run ends with the same adapter within fp32 tolerance.
func TestClusterDataParallelEquivalence(t *testing.T) {
	const steps, global = 6, 12
	var ref map[string][]float32
	for _, tc := range []struct {
		workers, micro int
	}{{1, 2}, {2, 2}, {3, 2}, {1, 12}, {2, 6}, {3, 4}} {
		t.Run(fmt.Sprintf("workers=%d,micro=%d", tc.workers, tc.micro), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			cfg := writeConfig(t, out, steps, tc.micro, global, "")
			j, adapter := runJob(t, cfg, tc.workers)
			if j.Step != steps || j.GlobalBatch != global {
				t.Fatalf("job %+v", j)
			}
			got := readAdapter(t, adapter)
			if ref == nil {
				ref = got
				return
			}
			d := maxDiff(t, ref, got)
			t.Logf("max |adapter - 1-worker adapter| = %.3g", d)
			if d > equivTolerance {
				t.Fatalf("adapter differs from the 1-worker run by %g (tolerance %g)", d, equivTolerance)
			}
		})
	}
}

// TestClusterLocalDevices: one worker process driving two engines
// (--devices cpu,cpu: micro-batches spread over them, gradients summed
// locally before the network), next to a plain worker, ends with the adapter
// of a single-engine run; so does `herd train --devices cpu,cpu`.
func TestClusterLocalDevices(t *testing.T) {
	const steps, global = 6, 12
	cfg := writeConfig(t, filepath.Join(t.TempDir(), "out"), steps, 2, global, "")
	ref := referenceAdapter(t, cfg)

	c := startCluster(t, 1)
	c.workerArgs("duo", nil, "--devices", "cpu,cpu")
	c.worker("solo")
	id := c.submit(cfg, "cluster.workers=2")
	j := c.waitJob(id, 60*time.Second, func(j proto.JobInfo) bool { return j.Status == proto.StatusCompleted })
	if d := maxDiff(t, ref, readAdapter(t, j.Adapter)); d > equivTolerance {
		t.Fatalf("2 engines in one worker + 1 worker: adapter differs by %g", d)
	} else {
		t.Logf("worker with 2 local engines + 1 worker: max diff %.3g", d)
	}

	out := filepath.Join(t.TempDir(), "train")
	r := herd(t, nil, "train", cfg, "--devices", "cpu,cpu", "--set", "output_dir="+out)
	if r.code != 0 {
		t.Fatalf("herd train --devices cpu,cpu: exit %d", r.code)
	}
	if d := maxDiff(t, ref, readAdapter(t, filepath.Join(out, "checkpoints", fmt.Sprintf("checkpoint-%d", steps)))); d > equivTolerance {
		t.Fatalf("herd train on 2 engines: adapter differs by %g", d)
	} else {
		t.Logf("herd train on 2 local engines: max diff %.3g", d)
	}
}
