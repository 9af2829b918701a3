package tests

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdml/herd/internal/proto"
	"github.com/herdml/herd/internal/testutil"
)

// TestClusterSecure: a coordinator with NATS TLS and a user/password, and
// mutual TLS on raft; a worker and the CLI with the credentials and the CA
// train a job; without them they get a clear error.
func TestClusterSecure(t *testing.T) {
	ca := testutil.NewCA(t, "herd")
	natsCert, natsKey := ca.Issue(t, "nats")
	raftCert, raftKey := ca.Issue(t, "raft")
	port, raftPort := freePort(t), freePort(t)
	url := fmt.Sprintf("tls://127.0.0.1:%d", port)
	start(t, "c0", nil, "coord", "start", "--id", "c0", "--data-dir", filepath.Join(t.TempDir(), "c0"), "--bootstrap",
		"--raft-addr", fmt.Sprintf("127.0.0.1:%d", raftPort), "--nats-port", fmt.Sprint(port), "--token", clusterToken,
		"--raft-timeout", "300ms", "--heartbeat", "100ms",
		"--nats-user", "herd", "--nats-password", "s3cret", "--nats-tls-cert", natsCert, "--nats-tls-key", natsKey,
		"--raft-tls-cert", raftCert, "--raft-tls-key", raftKey, "--raft-tls-ca", ca.File)
	creds := []string{"--nats-user", "herd", "--nats-password", "s3cret", "--nats-ca", ca.File}
	api := func(args ...string) result {
		return herd(t, nil, append(append(args, "--coord", url, "--token", clusterToken), creds...)...)
	}
	waitFor(t, 20*time.Second, func() error {
		if r := herd(t, nil, append([]string{"status", "--coord", url, "--token", clusterToken, "--timeout", "2s"}, creds...)...); r.code != 0 {
			return fmt.Errorf("status: exit %d", r.code)
		}
		return nil
	})
	if r := herd(t, nil, "jobs", "--coord", url, "--token", clusterToken, "--nats-ca", ca.File); r.code != 1 || !strings.Contains(r.stderr, "--nats-user") {
		t.Fatalf("jobs without credentials: exit %d", r.code)
	}
	if r := herd(t, nil, "jobs", "--coord", url, "--token", clusterToken, "--nats-user", "herd", "--nats-password", "s3cret"); r.code != 1 || !strings.Contains(r.stderr, "--nats-ca") {
		t.Fatalf("jobs without the CA: exit %d", r.code)
	}
	start(t, "w", nil, append([]string{"worker", "join", "--coord", url, "--token", clusterToken, "--id", "w"}, creds...)...)
	cfg := writeConfig(t, filepath.Join(t.TempDir(), "out"), 5, 2, 4, "")
	r := api("submit", cfg)
	if r.code != 0 {
		t.Fatalf("submit: exit %d", r.code)
	}
	id := strings.TrimSpace(r.stdout)
	waitFor(t, 60*time.Second, func() error {
		r := api("status", id)
		if !strings.Contains(r.stdout, proto.StatusCompleted) {
			return fmt.Errorf("status:\n%s", r.stdout)
		}
		return nil
	})
}
