package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/herdml/herd/internal/natsutil"
	"github.com/herdml/herd/internal/proto"
)

// Errors.
var (
	// ErrNotLeader: the request needs the raft leader and this coordinator
	// is not it.
	ErrNotLeader = errors.New("coordinator: not leader")
)

// Server is one coordinator: raft node, FSM, NATS and, while it leads, the
// job API, the worker protocol and the scheduling loop.
type Server struct {
	cfg  Config
	log  *slog.Logger
	fsm  *FSM
	raft *raft.Raft

	store     *raftboltdb.BoltStore
	transport *raft.NetworkTransport
	ns        *server.Server // nil with an external NATS
	clientURL string
	nc        *nats.Conn

	changed chan struct{} // poked after every apply (cap 1)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once
}

// Start opens (or creates) the coordinator's data dir, starts NATS and raft,
// bootstraps or joins the cluster when the data dir is new, and returns once
// the node runs (not necessarily leading). Close stops it.
func Start(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("coord", cfg.ID)
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("coordinator: data dir: %w", err)
	}
	s := &Server{cfg: cfg, log: log, changed: make(chan struct{}, 1)}
	s.fsm = NewFSM(log)
	s.fsm.onApply = s.poke
	s.ctx, s.cancel = context.WithCancel(context.Background())
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	if err := s.startNATS(); err != nil {
		return nil, err
	}
	if err := s.startRaft(); err != nil {
		return nil, err
	}
	s.wg.Go(s.leaderLoop)
	if cfg.Join != "" {
		s.wg.Go(s.joinLoop)
	}
	ok = true
	log.Info("coordinator started", "raft_addr", cfg.RaftAddr, "nats", s.clientURL, "data_dir", cfg.DataDir)
	return s, nil
}

func (s *Server) poke() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

func (s *Server) startNATS() error {
	url := s.cfg.NATSURL
	if url == "" {
		o := natsutil.EmbeddedOptions{Host: s.cfg.NATSHost, Port: s.cfg.NATSPort, MaxPayload: s.cfg.NATSMaxPayload,
			Username: s.cfg.NATSUser, Password: s.cfg.NATSPassword,
			TLSCert: s.cfg.NATSTLSCert, TLSKey: s.cfg.NATSTLSKey, TLSCA: s.cfg.NATSTLSCA}
		if s.cfg.JetStream {
			o.JetStream, o.StoreDir = true, filepath.Join(s.cfg.DataDir, "jetstream")
		}
		if s.cfg.Logger != nil {
			o.Logger = s.log.With("component", "nats")
		}
		so, err := o.ServerOptions()
		if err != nil {
			return err
		}
		if so.Port == 0 {
			so.Port = server.RANDOM_PORT
		}
		so.ServerName = s.cfg.ID
		if s.cfg.NATSClusterAddr != "" {
			host, port, err := net.SplitHostPort(s.cfg.NATSClusterAddr)
			if err != nil {
				return fmt.Errorf("coordinator: NATSClusterAddr %q: %w", s.cfg.NATSClusterAddr, err)
			}
			so.Cluster.Name = "herd"
			so.Cluster.Host = host
			so.Cluster.Port, _ = strconv.Atoi(port)
			var routes []string
			for _, r := range s.cfg.NATSRoutes {
				if !strings.Contains(r, "://") {
					r = "nats://" + r
				}
				routes = append(routes, r)
			}
			so.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		}
		ns, err := server.NewServer(so)
		if err != nil {
			return fmt.Errorf("coordinator: nats server: %w", err)
		}
		if o.Logger != nil {
			ns.SetLoggerV2(natsutil.ServerLogger(o.Logger), false, false, false)
		}
		go ns.Start()
		if !ns.ReadyForConnections(10 * time.Second) {
			ns.Shutdown()
			return fmt.Errorf("coordinator: embedded nats server on %s:%d not ready (port in use?)", so.Host, s.cfg.NATSPort)
		}
		s.ns = ns
		addr := ns.Addr().(*net.TCPAddr)
		host := so.Host
		if host == "0.0.0.0" || host == "::" || host == "" {
			host = "127.0.0.1"
		}
		scheme := "nats"
		if so.TLS {
			scheme = "tls"
		}
		url = scheme + "://" + net.JoinHostPort(host, strconv.Itoa(addr.Port))
	}
	s.clientURL = url
	co := s.clientOptions("herd-coord-" + s.cfg.ID)
	co.Logger = s.log
	nc, err := natsutil.Connect(url, co)
	if err != nil {
		return err
	}
	s.nc = nc
	return nil
}

func (s *Server) startRaft() error {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(s.cfg.ID)
	rc.HeartbeatTimeout = s.cfg.RaftTimeout
	rc.ElectionTimeout = s.cfg.RaftTimeout
	rc.LeaderLeaseTimeout = s.cfg.RaftTimeout / 2
	rc.CommitTimeout = min(rc.CommitTimeout, s.cfg.RaftTimeout/4)
	rc.SnapshotThreshold = s.cfg.SnapshotThreshold
	rc.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: slogWriter{s.log}})
	store, err := raftboltdb.NewBoltStore(filepath.Join(s.cfg.DataDir, "raft.db"))
	if err != nil {
		return fmt.Errorf("coordinator: raft store in %s (is another coordinator using this data dir?): %w", s.cfg.DataDir, err)
	}
	s.store = store
	snaps, err := raft.NewFileSnapshotStore(s.cfg.DataDir, 2, io.Discard)
	if err != nil {
		return fmt.Errorf("coordinator: snapshot store: %w", err)
	}
	addr, err := net.ResolveTCPAddr("tcp", s.cfg.RaftAddr)
	if err != nil {
		return fmt.Errorf("coordinator: raft addr: %w", err)
	}
	var tr *raft.NetworkTransport
	if s.cfg.RaftTLSCert != "" {
		layer, lerr := newTLSStreamLayer(s.cfg.RaftAddr, addr, s.cfg.RaftTLSCert, s.cfg.RaftTLSKey, s.cfg.RaftTLSCA)
		if lerr != nil {
			return lerr
		}
		tr = raft.NewNetworkTransport(layer, 3, 10*time.Second, io.Discard)
	} else {
		tr, err = raft.NewTCPTransport(s.cfg.RaftAddr, addr, 3, 10*time.Second, io.Discard)
	}
	if err != nil {
		return fmt.Errorf("coordinator: raft transport on %s: %w", s.cfg.RaftAddr, err)
	}
	s.transport = tr
	existing, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return fmt.Errorf("coordinator: raft state: %w", err)
	}
	if !existing && !s.cfg.Bootstrap && s.cfg.Join == "" {
		return fmt.Errorf("coordinator: data dir %s holds no raft state: pass --bootstrap to found a cluster or --join URL to join one", s.cfg.DataDir)
	}
	r, err := raft.NewRaft(rc, s.fsm, store, store, snaps, tr)
	if err != nil {
		return fmt.Errorf("coordinator: raft: %w", err)
	}
	s.raft = r
	if !existing && s.cfg.Bootstrap {
		f := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: tr.LocalAddr()}}})
		if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("coordinator: bootstrap: %w", err)
		}
	}
	return nil
}

// clientOptions are the options of the coordinator's own connections.
func (s *Server) clientOptions(name string) natsutil.ConnectOptions {
	co := s.cfg.Client
	co.Name, co.MaxReconnects = name, -1
	if co.User == "" && co.Token == "" && co.NkeySeedFile == "" && co.CredsFile == "" && s.cfg.NATSUser != "" {
		co.User, co.Password = s.cfg.NATSUser, s.cfg.NATSPassword
	}
	if co.TLSCA == "" && s.cfg.NATSTLSCert != "" && s.cfg.NATSURL == "" {
		// Its own server: the certificate may name another host than the
		// loopback address the coordinator dials.
		co.TLSInsecureSkipVerify = true
	}
	return co
}

// joinLoop asks the cluster's leader to add this node as a voter until it
// is one.
func (s *Server) joinLoop() {
	nc, err := natsutil.Connect(s.cfg.Join, s.clientOptions("herd-coord-join-"+s.cfg.ID))
	if err != nil {
		s.log.Error("join: cannot reach the cluster", "url", s.cfg.Join, "err", err)
		return
	}
	defer nc.Close()
	for {
		if s.isVoter() {
			return
		}
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
		err := proto.Call(ctx, nc, proto.SubjectAddVoter, s.cfg.Token, proto.AddVoterRequest{ID: s.cfg.ID, RaftAddr: s.cfg.RaftAddr}, nil)
		cancel()
		if err == nil {
			s.log.Info("joined the raft cluster", "via", s.cfg.Join)
			return
		}
		if proto.IsCode(err, proto.CodeBadToken) {
			s.log.Error("join refused", "err", err)
			return
		}
		s.log.Warn("join: retrying", "err", err)
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (s *Server) isVoter() bool {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, srv := range f.Configuration().Servers {
		if srv.ID == raft.ServerID(s.cfg.ID) && srv.Suffrage == raft.Voter {
			return true
		}
	}
	return false
}

// ClientURL is the NATS URL workers and the CLI use to reach this
// coordinator.
func (s *Server) ClientURL() string { return s.clientURL }

// ID is the coordinator's raft id.
func (s *Server) ID() string { return s.cfg.ID }

// IsLeader reports whether this coordinator leads the raft cluster.
func (s *Server) IsLeader() bool { return s.raft.State() == raft.Leader }

// Leader returns the leader's raft id ("" when unknown).
func (s *Server) Leader() string {
	_, id := s.raft.LeaderWithID()
	return string(id)
}

// State returns the replicated state as this coordinator has applied it.
func (s *Server) State() *State { return s.fsm.State() }

// Close stops the coordinator: leader duties, raft, NATS. It is idempotent.
func (s *Server) Close() error {
	var errs []error
	s.closeOnce.Do(func() {
		s.cancel()
		s.wg.Wait()
		if s.raft != nil {
			if err := s.raft.Shutdown().Error(); err != nil {
				errs = append(errs, err)
			}
		}
		if s.transport != nil {
			// Close the pooled outbound connections too, so that the
			// peers' handlers of them end.
			s.transport.CloseStreams()
			errs = append(errs, s.transport.Close())
		}
		if s.store != nil {
			errs = append(errs, s.store.Close())
		}
		if s.nc != nil {
			s.nc.Close()
		}
		if s.ns != nil {
			s.ns.Shutdown()
			s.ns.WaitForShutdown()
		}
	})
	return errors.Join(errs...)
}

// apply proposes a command and returns its result.
func (s *Server) apply(t MessageType, cmd any) (any, error) {
	data, err := Encode(t, cmd)
	if err != nil {
		return nil, err
	}
	f := s.raft.Apply(data, s.cfg.ApplyTimeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return nil, fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
		return nil, fmt.Errorf("coordinator: raft apply %s: %w", t, err)
	}
	if err, ok := f.Response().(error); ok {
		return nil, err
	}
	return f.Response(), nil
}

// slogWriter turns hclog's lines (raft's warnings and errors) into slog
// records at info level: elections and lost contact are routine in a
// cluster's life; herd logs what they mean for jobs itself.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Info(strings.TrimSpace(string(p)), "component", "raft")
	return len(p), nil
}

// Voters counts the voters in the raft configuration as this node knows it.
func (s *Server) Voters() int {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	n := 0
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage == raft.Voter {
			n++
		}
	}
	return n
}

// WaitApplied blocks until this coordinator, as leader, has applied every
// entry of the raft log (a raft barrier): a leader that has just been
// elected may not have replayed the log yet. It fails on a follower.
func (s *Server) WaitApplied(timeout time.Duration) error {
	if err := s.raft.Barrier(timeout).Error(); err != nil {
		return fmt.Errorf("coordinator: barrier: %w", err)
	}
	return nil
}

// Snapshot makes raft take a snapshot of the FSM now (and compact its log).
func (s *Server) Snapshot() error {
	if err := s.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("coordinator: snapshot: %w", err)
	}
	return nil
}
