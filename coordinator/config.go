package coordinator

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/herdml/herd/internal/natsutil"
	"github.com/herdml/herd/internal/proto"
	"github.com/herdml/herd/telemetry"
)

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Config configures a coordinator Server. Start from DefaultConfig.
type Config struct {
	// ID names this coordinator in the raft cluster: letters, digits, '-'
	// and '_' (proto.ValidID). Required.
	ID string
	// DataDir holds the raft log and stable store (raft.db) and the
	// snapshots (snapshots/). Required; created if missing. A coordinator
	// restarted with the same DataDir recovers the whole state.
	DataDir string
	// RaftAddr is the host:port of the raft TCP transport; it must be
	// reachable by the other coordinators under this address (the port may
	// not be 0). Required.
	RaftAddr string
	// Bootstrap makes this coordinator found a new cluster (of itself) when
	// DataDir holds no raft state. Exclusive with Join.
	Bootstrap bool
	// Join is the NATS URL of a running cluster whose leader adds this
	// coordinator as a voter, when DataDir holds no raft state. Exclusive
	// with Bootstrap. With neither, DataDir must hold raft state (a
	// restart).
	Join string

	// NATSURL, when set, uses that external NATS cluster instead of an
	// embedded server (the NATS* fields below are then ignored).
	NATSURL string
	// NATSHost and NATSPort are where the embedded NATS server listens for
	// clients (workers, the CLI). Defaults 127.0.0.1 and 4222; port 0 picks
	// a free one (see Server.ClientURL).
	NATSHost string
	NATSPort int
	// NATSClusterAddr (host:port) is where the embedded server listens for
	// routes from the other coordinators' servers; empty: no clustering.
	NATSClusterAddr string
	// NATSRoutes are the other coordinators' cluster addresses
	// (nats://host:port).
	NATSRoutes []string
	// NATSMaxPayload is the embedded server's max_payload; 0 means
	// natsutil.DefaultMaxPayload (8 MiB).
	NATSMaxPayload int32
	// NATSUser and NATSPassword, when set, are required of every client
	// of the embedded server (set both or neither).
	NATSUser, NATSPassword string
	// NATSTLSCert and NATSTLSKey (PEM files) turn on TLS for the embedded
	// server's clients; NATSTLSCA, when set, also requires client
	// certificates signed by that CA.
	NATSTLSCert, NATSTLSKey, NATSTLSCA string
	// JetStream turns on JetStream in the embedded server (store under
	// DataDir/jetstream), for the checkpoint object store of workers
	// without a shared file system (`herd worker join --checkpoint-store
	// nats`). Every clustered coordinator must set it alike.
	JetStream bool
	// Client are the options of the coordinator's own NATS connections (to
	// its embedded server or NATSURL, and to Join): credentials and TLS. With
	// NATSUser set and no Client credentials, those are used.
	Client natsutil.ConnectOptions

	// RaftTLSCert, RaftTLSKey and RaftTLSCA (PEM files) turn on mutual TLS
	// on the raft transport: every coordinator presents its certificate and
	// accepts only peers whose certificate RaftTLSCA signed. Set all three
	// or none.
	RaftTLSCert, RaftTLSKey, RaftTLSCA string

	// Token is the join token every request must carry. Required.
	Token string

	// RaftTimeout sets raft's heartbeat and election timeouts (the leader
	// lease is half of it). Default 1s; tests use 200-300ms. Leader failover
	// takes about 1-2 timeouts.
	RaftTimeout time.Duration
	// SnapshotThreshold is how many raft log entries trigger a snapshot.
	// Default 4096.
	SnapshotThreshold uint64
	// ApplyTimeout bounds one raft apply. Default 10s.
	ApplyTimeout time.Duration

	// Heartbeat is the interval idle workers heartbeat at (workers in a job
	// use its cluster.heartbeat). Default 2s.
	Heartbeat time.Duration
	// Tick is the scheduling loop's period. Default 100ms.
	Tick time.Duration
	// StatsFlush is how often reported step statistics are written to the
	// raft log in one batch. Default 500ms.
	StatsFlush time.Duration
	// WaitTimeout is how long a job that lost its workers waits for
	// min_workers to return before it fails. Default 30m.
	WaitTimeout time.Duration
	// WorkerGC is how long a registered worker may stay silent before the
	// leader forgets it (a worker that comes back registers again). It must
	// be well above any heartbeat interval. Default 1h.
	WorkerGC time.Duration
	// FailureThreshold is how many failures put a worker in a cool-down.
	// Default 3.
	FailureThreshold int
	// Cooldown is how long a worker is left out of groups after
	// FailureThreshold failures. Default 5m.
	Cooldown time.Duration
	// ScoreLease is how long a scoring batch stays leased to a live worker
	// without a result before it is issued again. 0 means
	// DefaultScoreLease.
	ScoreLease time.Duration

	// Logger receives the coordinator's log; nil discards it.
	Logger *slog.Logger
	// Telemetry receives the leader's spans (job, schedule, group.epoch,
	// checkpoint.commit) and metrics; nil records nothing.
	Telemetry *telemetry.Telemetry
}

// DefaultConfig returns a Config with every default set; the required
// fields (ID, DataDir, RaftAddr, Token, and Bootstrap or Join) are empty.
func DefaultConfig() Config {
	return Config{
		NATSHost:          "127.0.0.1",
		NATSPort:          4222,
		RaftTimeout:       time.Second,
		SnapshotThreshold: 4096,
		ApplyTimeout:      10 * time.Second,
		Heartbeat:         2 * time.Second,
		Tick:              100 * time.Millisecond,
		StatsFlush:        500 * time.Millisecond,
		WaitTimeout:       30 * time.Minute,
		WorkerGC:          time.Hour,
		FailureThreshold:  3,
		Cooldown:          5 * time.Minute,
	}
}

// Validate returns every problem with c, joined, each naming its field.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("coordinator: "+format, args...)) }
	if c.ID == "" {
		bad("ID: required (--id)")
	} else if err := proto.ValidID(c.ID); err != nil {
		bad("ID: %v", err)
	}
	if c.DataDir == "" {
		bad("DataDir: required (--data-dir)")
	}
	if c.RaftAddr == "" {
		bad("RaftAddr: required (--raft-addr HOST:PORT)")
	} else if _, port, err := net.SplitHostPort(c.RaftAddr); err != nil || port == "0" {
		bad("RaftAddr: %q is not HOST:PORT with a fixed port", c.RaftAddr)
	}
	if c.Bootstrap && c.Join != "" {
		bad("Bootstrap and Join: use one (--bootstrap founds a cluster, --join joins one)")
	}
	if c.Token == "" {
		bad("Token: required (--token or HERD_TOKEN)")
	}
	if c.NATSPort < 0 || c.NATSPort > 65535 {
		bad("NATSPort: %d out of range 0..65535", c.NATSPort)
	}
	for name, d := range map[string]time.Duration{"RaftTimeout": c.RaftTimeout, "ApplyTimeout": c.ApplyTimeout,
		"Heartbeat": c.Heartbeat, "Tick": c.Tick, "StatsFlush": c.StatsFlush, "WaitTimeout": c.WaitTimeout, "Cooldown": c.Cooldown, "WorkerGC": c.WorkerGC} {
		if d <= 0 {
			bad("%s: %v must be positive", name, d)
		}
	}
	if (c.NATSUser == "") != (c.NATSPassword == "") {
		bad("NATSUser/NATSPassword: set both or neither")
	}
	if (c.NATSTLSCert == "") != (c.NATSTLSKey == "") {
		bad("NATSTLSCert/NATSTLSKey: set both or neither")
	}
	if n := btoi(c.RaftTLSCert != "") + btoi(c.RaftTLSKey != "") + btoi(c.RaftTLSCA != ""); n != 0 && n != 3 {
		bad("RaftTLSCert/RaftTLSKey/RaftTLSCA: set all three or none")
	}
	if c.FailureThreshold < 1 {
		bad("FailureThreshold: %d must be >= 1", c.FailureThreshold)
	}
	return errors.Join(errs...)
}
