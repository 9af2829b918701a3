package tests

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdml/herd/internal/proto"
)

// TestClusterAllWorkersLost: the only worker is killed; the job waits;
// a new worker restores the last recorded checkpoint and finishes with the
// adapter of an uninterrupted run. `herd logs` tells the story.
func TestClusterAllWorkersLost(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	cfg := writeConfig(t, out, 30, 2, 4, "")
	ref := referenceAdapter(t, cfg)

	c := startCluster(t, 1)
	c.worker("a", stepDelayEnv, "HERD_TEST_KILL_AT_STEP=13")
	id := c.submit(cfg)
	j := c.waitJob(id, 60*time.Second, func(j proto.JobInfo) bool { return j.Status == proto.StatusWaiting })
	if len(j.Checkpoints) == 0 || j.Checkpoints[len(j.Checkpoints)-1].Step != 10 {
		t.Fatalf("checkpoints %+v, want the last at step 10", j.Checkpoints)
	}
	c.worker("b", stepDelayEnv)
	j = c.waitJob(id, 60*time.Second, func(j proto.JobInfo) bool { return j.Status == proto.StatusCompleted })
	d := maxDiff(t, ref, readAdapter(t, j.Adapter))
	t.Logf("max |adapter - reference| = %.3g", d)
	if d > equivTolerance {
		t.Fatalf("adapter differs from the uninterrupted run by %g", d)
	}
	r := herd(t, nil, "logs", id, "--coord", c.urls(), "--token", clusterToken)
	for _, want := range []string{"group epoch 1: world 1 [a]", "waiting", "group epoch 2: world 1 [b] at step", "checkpoint at step 10", "completed"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("herd logs lacks %q", want)
		}
	}
}

// TestClusterCancel: a cancelled job stops on every worker, which become
// free for the next job.
func TestClusterCancel(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	cfg := writeConfig(t, out, 100000, 2, 4, "")
	c := startCluster(t, 1)
	c.worker("a", stepDelayEnv)
	c.worker("b", stepDelayEnv)
	id := c.submit(cfg, "cluster.workers=2")
	c.waitJob(id, 60*time.Second, func(j proto.JobInfo) bool { return j.Step >= 3 })
	follow := start(t, "logs", nil, "logs", id, "--follow", "--coord", c.urls(), "--token", clusterToken)
	if r := herd(t, nil, "cancel", id, "--coord", c.urls(), "--token", clusterToken); r.code != 0 || !strings.Contains(r.stdout, "cancelled") {
		t.Fatalf("cancel: exit %d", r.code)
	}
	// `herd logs --follow` prints the steps and ends with the job.
	if !follow.exitedWithin(20*time.Second) || follow.cmd.ProcessState.ExitCode() != 0 {
		t.Fatalf("logs --follow did not end with the job:\n%s", follow.out.String())
	}
	if out := follow.out.String(); !strings.Contains(out, "step 3/100000 loss") || !strings.Contains(out, "cancelled: by request") {
		t.Fatalf("logs --follow:\n%s", tail(out, 2000))
	}
	// The workers leave the job and take the next one.
	next := c.submit(writeConfig(t, filepath.Join(t.TempDir(), "out2"), 5, 2, 4, ""), "cluster.workers=2")
	c.waitJob(next, 60*time.Second, func(j proto.JobInfo) bool { return j.Status == proto.StatusCompleted })
	if r := herd(t, nil, "cancel", id, "--coord", c.urls(), "--token", clusterToken); r.code != 1 || !strings.Contains(r.stderr, "already cancelled") {
		t.Fatalf("second cancel: exit %d", r.code)
	}
	r := herd(t, nil, "jobs", "--coord", c.urls(), "--token", clusterToken)
	if !strings.Contains(r.stdout, "cancelled") || !strings.Contains(r.stdout, "completed") {
		t.Fatalf("jobs:\n%s", r.stdout)
	}
}

// TestClusterObjectStoreCheckpoints: workers without a shared file system
// keep checkpoints in the coordinators' JetStream object store. The only
// worker dies after the step-10 checkpoint; a new one restores it from the
// store; `herd fetch` copies the final adapter out, equal to an
// uninterrupted run's.
func TestClusterObjectStoreCheckpoints(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	cfg := writeConfig(t, out, 30, 2, 4, "")
	ref := referenceAdapter(t, cfg)

	c := startCluster(t, 1, "--jetstream")
	c.workerArgs("a", []string{stepDelayEnv, "HERD_TEST_KILL_AT_STEP=13"}, "--checkpoint-store", "nats")
	id := c.submit(cfg)
	j := c.waitJob(id, 60*time.Second, func(j proto.JobInfo) bool { return j.Status == proto.StatusWaiting })
	if n := len(j.Checkpoints); n == 0 || !strings.HasPrefix(j.Checkpoints[n-1].Path, "nats-object://herd-checkpoints/"+id+"/checkpoint-10") {
		t.Fatalf("checkpoints %+v", j.Checkpoints)
	}
	c.workerArgs("b", []string{stepDelayEnv}, "--checkpoint-store", "nats")
	j = c.waitJob(id, 60*time.Second, func(j proto.JobInfo) bool { return j.Status == proto.StatusCompleted })
	if !strings.HasPrefix(j.Adapter, "nats-object://") {
		t.Fatalf("adapter %s", j.Adapter)
	}
	assertAbsent(t, filepath.Join(out, "checkpoints"))
	dir := filepath.Join(t.TempDir(), "adapter")
	if r := herd(t, nil, "fetch", id, "--out", dir, "--coord", c.urls(), "--token", clusterToken); r.code != 0 {
		t.Fatalf("fetch: exit %d", r.code)
	}
	d := maxDiff(t, ref, readAdapter(t, dir))
	t.Logf("max |fetched adapter - reference| = %.3g", d)
	if d > equivTolerance {
		t.Fatalf("adapter differs from the uninterrupted run by %g", d)
	}
}

// TestClusterObjectStoreClustered: JetStream on three clustered
// coordinators serves the checkpoint store too.
func TestClusterObjectStoreClustered(t *testing.T) {
	c := startCluster(t, 3, "--jetstream")
	c.workerArgs("a", nil, "--checkpoint-store", "nats")
	id := c.submit(writeConfig(t, filepath.Join(t.TempDir(), "out"), 6, 2, 4, ""))
	j := c.waitJob(id, 90*time.Second, func(j proto.JobInfo) bool { return j.Status == proto.StatusCompleted })
	dir := filepath.Join(t.TempDir(), "adapter")
	if r := herd(t, nil, "fetch", id, "--out", dir, "--coord", c.urls(), "--token", clusterToken); r.code != 0 {
		t.Fatalf("fetch %s: exit %d", j.Adapter, r.code)
	}
	readAdapter(t, dir)
}
