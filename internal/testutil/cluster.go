package testutil

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/herdml/herd/coordinator"
	"github.com/herdml/herd/internal/natsutil"
)

// Token is the join token of clusters made by MakeCluster.
const Token = "test-token"

// Cluster is a set of in-process coordinators.
type Cluster struct {
	t       testing.TB
	Servers []*coordinator.Server // nil where stopped
	Configs []coordinator.Config
}

// MakeCluster starts n coordinators on 127.0.0.1 with random ports, data
// dirs under t.TempDir(), raft timeouts of 200ms and fast heartbeats; the
// first bootstraps, the others join through it. edit, when not nil, may
// change each Config before start. The cluster is closed when the test ends.
func MakeCluster(t testing.TB, n int, edit func(i int, c *coordinator.Config)) *Cluster {
	t.Helper()
	c := &Cluster{t: t, Servers: make([]*coordinator.Server, n), Configs: make([]coordinator.Config, n)}
	dir := t.TempDir()
	clusterPorts := make([]int, n)
	for i := range clusterPorts {
		clusterPorts[i] = FreePort(t)
	}
	for i := range n {
		cfg := coordinator.DefaultConfig()
		cfg.ID = fmt.Sprintf("c%d", i)
		cfg.DataDir = filepath.Join(dir, cfg.ID)
		cfg.RaftAddr = Addr(FreePort(t))
		cfg.NATSPort = FreePort(t)
		cfg.Token = Token
		cfg.RaftTimeout = 200 * time.Millisecond
		cfg.Heartbeat = 100 * time.Millisecond
		cfg.Tick = 50 * time.Millisecond
		cfg.StatsFlush = 100 * time.Millisecond
		cfg.Logger = Logger(t).With("node", cfg.ID)
		if n > 1 {
			cfg.NATSClusterAddr = Addr(clusterPorts[i])
			for k, p := range clusterPorts {
				if k != i {
					cfg.NATSRoutes = append(cfg.NATSRoutes, "nats://"+Addr(p))
				}
			}
		}
		if i == 0 {
			cfg.Bootstrap = true
		} else {
			cfg.Join = fmt.Sprintf("nats://%s", Addr(c.Configs[0].NATSPort))
		}
		if edit != nil {
			edit(i, &cfg)
		}
		c.Configs[i] = cfg
	}
	t.Cleanup(c.Close)
	for i := range n {
		c.Start(i)
		if i == 0 {
			c.WaitForLeader(10 * time.Second)
		}
	}
	if n > 1 {
		c.WaitForVoters(n, 20*time.Second)
	}
	return c
}

// Start starts (or restarts, from its data dir) coordinator i.
func (c *Cluster) Start(i int) {
	c.t.Helper()
	s, err := coordinator.Start(c.Configs[i])
	if err != nil {
		c.t.Fatalf("start coordinator %d: %v", i, err)
	}
	c.Servers[i] = s
}

// Stop stops coordinator i (as a crash would, minus the lost disk writes:
// raft's log is synced on every write).
func (c *Cluster) Stop(i int) {
	if c.Servers[i] != nil {
		_ = c.Servers[i].Close()
		c.Servers[i] = nil
	}
}

// Close stops every coordinator.
func (c *Cluster) Close() {
	for i := range c.Servers {
		c.Stop(i)
	}
}

// URLs returns the client URLs of the running coordinators, comma-separated.
func (c *Cluster) URLs() string {
	var urls []string
	for _, s := range c.Servers {
		if s != nil {
			urls = append(urls, s.ClientURL())
		}
	}
	return strings.Join(urls, ",")
}

// WaitForLeader waits until exactly one running coordinator leads and
// returns its index.
func (c *Cluster) WaitForLeader(wait time.Duration) int {
	c.t.Helper()
	idx := -1
	CheckFor(c.t, wait, 20*time.Millisecond, func() error {
		idx = -1
		for i, s := range c.Servers {
			if s != nil && s.IsLeader() {
				if idx >= 0 {
					return errors.New("two leaders")
				}
				idx = i
			}
		}
		if idx < 0 {
			return errors.New("no leader")
		}
		return nil
	})
	return idx
}

// WaitForVoters waits until the leader's raft configuration has n servers.
func (c *Cluster) WaitForVoters(n int, wait time.Duration) {
	c.t.Helper()
	CheckFor(c.t, wait, 50*time.Millisecond, func() error {
		l := c.WaitForLeader(wait)
		if got := c.Servers[l].Voters(); got != n {
			return fmt.Errorf("%d voters, want %d", got, n)
		}
		return nil
	})
}

// Connect opens a NATS connection to the running coordinators.
func (c *Cluster) Connect() *nats.Conn {
	c.t.Helper()
	nc, err := natsutil.Connect(c.URLs(), natsutil.ConnectOptions{Name: "test-client", MaxReconnects: -1})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(nc.Close)
	return nc
}
