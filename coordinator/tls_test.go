package coordinator_test

import (
	"strings"
	"testing"
	"time"

	"github.com/herdml/herd/coordinator"
	"github.com/herdml/herd/internal/natsutil"
	"github.com/herdml/herd/internal/proto"
	"github.com/herdml/herd/internal/testutil"
)

// TestSecureCluster: raft over mutual TLS, NATS clients over TLS with a
// user and password. A client without the credentials is refused; one with
// them uses the API.
func TestSecureCluster(t *testing.T) {
	testutil.VerifyNoLeaks(t)
	ca := testutil.NewCA(t, "herd")
	c := testutil.MakeCluster(t, 3, func(i int, cfg *coordinator.Config) {
		name := cfg.ID
		cfg.RaftTLSCert, cfg.RaftTLSKey = ca.Issue(t, name+"-raft")
		cfg.RaftTLSCA = ca.File
		cfg.NATSTLSCert, cfg.NATSTLSKey = ca.Issue(t, name+"-nats")
		cfg.NATSUser, cfg.NATSPassword = "herd", "s3cret"
		cfg.Client.TLSCA = ca.File
		cfg.Join = strings.Replace(cfg.Join, "nats://", "tls://", 1)
	})
	url := c.URLs()
	if !strings.HasPrefix(url, "tls://") {
		t.Fatalf("client URL %s", url)
	}
	if _, err := natsutil.Connect(url, natsutil.ConnectOptions{TLSCA: ca.File}); err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("connect without credentials: %v", err)
	}
	if _, err := natsutil.Connect(url, natsutil.ConnectOptions{User: "herd", Password: "s3cret"}); err == nil {
		t.Fatal("connect without the CA succeeded")
	}
	nc, err := natsutil.Connect(url, natsutil.ConnectOptions{User: "herd", Password: "s3cret", TLSCA: ca.File})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	job := submit(t, nc, tinyYAML)
	if job.ID != "job-1" {
		t.Fatalf("job %+v", job)
	}
	// Raft replicates over TLS: every coordinator applies the submission.
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		for _, s := range c.Servers {
			if _, ok := s.State().Jobs["job-1"]; !ok {
				return proto.Errorf(proto.CodeNotFound, "%s has not applied the job", s.ID())
			}
		}
		return nil
	})
}
