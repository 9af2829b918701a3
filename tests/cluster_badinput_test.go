package tests

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herdml/herd/internal/proto"
)

// TestClusterBadInput: a config error, a missing model, an unreachable
// coordinator and a wrong token each give a clear error, a non-zero exit
// and no half-written state.
func TestClusterBadInput(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	cfg := writeConfig(t, out, 5, 2, 4, "")

	t.Run("config error", func(t *testing.T) {
		for _, args := range [][]string{
			{"train", cfg, "--set", "training.lr=-1", "--set", "cluster.workers=-2"},
			{"submit", cfg, "--set", "training.lr=-1", "--set", "cluster.workers=-2", "--coord", "nats://127.0.0.1:1", "--token", "x"},
		} {
			r := herd(t, nil, args...)
			if r.code != 1 || !strings.Contains(r.stderr, "training.lr") || !strings.Contains(r.stderr, "cluster.workers") {
				t.Fatalf("%s: exit %d", args[0], r.code)
			}
		}
		assertAbsent(t, out)
	})
	t.Run("missing model", func(t *testing.T) {
		r := herd(t, nil, "train", cfg, "--set", "model.path="+filepath.Join(dir, "nope"))
		if r.code != 1 || !strings.Contains(r.stderr, "model.path") || !strings.Contains(r.stderr, "init-tiny") {
			t.Fatalf("train: exit %d", r.code)
		}
		assertAbsent(t, out)
	})
	t.Run("unreachable coordinator", func(t *testing.T) {
		url := "nats://127.0.0.1:" + strconv.Itoa(freePort(t))
		for _, args := range [][]string{
			{"submit", cfg, "--coord", url, "--token", "x"},
			{"jobs", "--coord", url, "--token", "x"},
			{"worker", "join", "--coord", url, "--token", "x"},
		} {
			r := herd(t, nil, args...)
			if r.code != 1 || !strings.Contains(r.stderr, "cannot reach") {
				t.Fatalf("%v: exit %d", args, r.code)
			}
		}
	})
	t.Run("bad telemetry flags", func(t *testing.T) {
		busy := freePortHeld(t)
		for _, tc := range []struct {
			args []string
			code int
			want string
		}{
			{[]string{"worker", "join", "--coord", "nats://127.0.0.1:1", "--token", "x", "--trace-sample-ratio", "2"}, 2, "--trace-sample-ratio"},
			{[]string{"coord", "start", "--id", "c9", "--data-dir", filepath.Join(dir, "c9"), "--raft-addr", "127.0.0.1:1",
				"--token", "x", "--bootstrap", "--metrics-addr", busy}, 1, "metrics_addr"},
		} {
			r := herd(t, nil, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("%v: exit %d, want %d and an error naming %s", tc.args, r.code, tc.code, tc.want)
			}
		}
		assertAbsent(t, filepath.Join(dir, "c9"))
	})

	c := startCluster(t, 1)
	t.Run("wrong token", func(t *testing.T) {
		r := herd(t, nil, "submit", cfg, "--coord", c.urls(), "--token", "wrong")
		if r.code != 1 || !strings.Contains(r.stderr, "wrong join token") || !strings.Contains(r.stderr, "HERD_TOKEN") {
			t.Fatalf("submit: exit %d", r.code)
		}
		if r := herd(t, []string{"HERD_TOKEN="}, "jobs", "--coord", c.urls()); r.code != 2 || !strings.Contains(r.stderr, "no join token") {
			t.Fatalf("jobs without a token: exit %d", r.code)
		}
		w := start(t, "bad-worker", nil, "worker", "join", "--coord", c.urls(), "--token", "wrong", "--id", "bad")
		if !w.exitedWithin(40*time.Second) || w.cmd.ProcessState.ExitCode() != 1 || !strings.Contains(w.out.String(), "join token") {
			t.Fatalf("worker with a wrong token: %s", w.out.String())
		}
		r = herd(t, nil, "jobs", "--coord", c.urls(), "--token", clusterToken)
		if r.code != 0 || strings.Contains(r.stdout, "job-") {
			t.Fatalf("jobs after refused requests: %s", r.stdout)
		}
	})
	t.Run("model missing on the workers", func(t *testing.T) {
		c.worker("w")
		r := herd(t, nil, "submit", cfg, "--coord", c.urls(), "--token", clusterToken, "--skip-path-check",
			"--set", "model.path="+filepath.Join(dir, "gone"))
		if r.code != 0 {
			t.Fatalf("submit: exit %d", r.code)
		}
		id := strings.TrimSpace(r.stdout)
		var j proto.JobInfo
		waitFor(t, 30*time.Second, func() error {
			var err error
			j, err = c.job(id)
			if err == nil && j.Status != proto.StatusFailed {
				return os.ErrNotExist
			}
			return err
		})
		if !strings.Contains(j.Error, "gone") || !strings.Contains(j.Error, "model") {
			t.Fatalf("failed job error %q", j.Error)
		}
		assertAbsent(t, out)
	})
}

func assertAbsent(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		t.Fatalf("%s was created", path)
	}
}

// freePortHeld returns 127.0.0.1:PORT on a listener kept open until the
// test ends: a port that is in use.
func freePortHeld(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().String()
}
