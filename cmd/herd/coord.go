package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/herdml/herd/coordinator"
	"github.com/herdml/herd/internal/natsutil"
	"github.com/herdml/herd/internal/proto"
	"github.com/herdml/herd/telemetry"
)

// logFormatFlag is the global --log-format: every long-running command
// (coord start, worker join, train) logs through newLogger.
var logFormatFlag = &cli.StringFlag{Name: "log-format", Value: "text", Usage: "log format of long-running commands: text or json", EnvVars: []string{"HERD_LOG_FORMAT"}}

// newLogger returns the structured logger of the global --log-format at
// level, on stderr.
func newLogger(c *cli.Context, level slog.Level) (*slog.Logger, error) {
	log, err := telemetry.NewLogger(c.App.ErrWriter, c.String("log-format"), level.String())
	if err != nil {
		return nil, cli.Exit("--"+err.Error(), 2)
	}
	return log, nil
}

// natsClientFlags authenticate a NATS connection to the coordinators (see
// docs/security.md); every command that connects takes them.
var natsClientFlags = []cli.Flag{
	&cli.StringFlag{Name: "nats-user", EnvVars: []string{"HERD_NATS_USER"}, Usage: "NATS user name, when the coordinators require one"},
	&cli.StringFlag{Name: "nats-password", EnvVars: []string{"HERD_NATS_PASSWORD"}, Usage: "NATS password"},
	&cli.StringFlag{Name: "nats-ca", EnvVars: []string{"HERD_NATS_CA"}, Usage: "CA certificate (PEM) that signed the coordinators' NATS TLS certificates"},
	&cli.StringFlag{Name: "nats-cert", Usage: "client certificate (PEM), when the coordinators require one"},
	&cli.StringFlag{Name: "nats-key", Usage: "client certificate key (PEM)"},
}

// natsClientOptions reads natsClientFlags.
func natsClientOptions(c *cli.Context) natsutil.ConnectOptions {
	return natsutil.ConnectOptions{User: c.String("nats-user"), Password: c.String("nats-password"),
		TLSCA: c.String("nats-ca"), TLSCert: c.String("nats-cert"), TLSKey: c.String("nats-key")}
}

// withNATS appends the NATS client flags to a command's flags.
func withNATS(flags ...cli.Flag) []cli.Flag { return append(flags, natsClientFlags...) }

var (
	coordFlag = &cli.StringFlag{Name: "coord", Value: "nats://127.0.0.1:4222", EnvVars: []string{"HERD_COORD"},
		Usage: "NATS URL of any coordinator (comma-separated for several)"}
	tokenFlag = &cli.StringFlag{Name: "token", EnvVars: []string{"HERD_TOKEN"}, Usage: "the cluster's join token"}
)

func coordCommand() *cli.Command {
	return &cli.Command{
		Name:  "coord",
		Usage: "run and manage coordinators (raft + embedded NATS)",
		Subcommands: []*cli.Command{
			{
				Name:  "start",
				Usage: "start a coordinator; runs until interrupted",
				Description: "The first coordinator of a cluster starts with --bootstrap, the others with --join URL " +
					"(a NATS URL of a running coordinator). A coordinator restarted with its --data-dir recovers its state " +
					"and needs neither. Clustered coordinators route their embedded NATS servers to each other " +
					"(--nats-cluster-addr and --nats-routes), so workers and the CLI may use any of them.",
				Flags: append(withNATS(
					&cli.StringFlag{Name: "id", Required: true, Usage: "this coordinator's id (letters, digits, - and _)"},
					&cli.StringFlag{Name: "data-dir", Required: true, Usage: "raft log, stable store and snapshots"},
					&cli.StringFlag{Name: "raft-addr", Required: true, Usage: "HOST:PORT of the raft transport, reachable by the other coordinators"},
					&cli.BoolFlag{Name: "bootstrap", Usage: "found a new cluster (only when --data-dir is new)"},
					&cli.StringFlag{Name: "join", Usage: "NATS URL of a running coordinator whose leader adds this one as a voter"},
					&cli.StringFlag{Name: "nats-host", Value: "127.0.0.1", Usage: "embedded NATS client listen host (0.0.0.0 for all)"},
					&cli.IntFlag{Name: "nats-port", Value: 4222, Usage: "embedded NATS client port (0: any free port)"},
					&cli.StringFlag{Name: "nats-cluster-addr", Usage: "HOST:PORT where the embedded NATS server accepts routes from the other coordinators"},
					&cli.StringSliceFlag{Name: "nats-routes", Usage: "the other coordinators' --nats-cluster-addr (repeatable or comma-separated)"},
					&cli.StringFlag{Name: "nats-url", Usage: "use this external NATS cluster instead of an embedded server"},
					&cli.BoolFlag{Name: "jetstream", Usage: "turn on JetStream (the checkpoint store of workers without a shared file system); set it on every coordinator"},
					tokenFlag,
					&cli.DurationFlag{Name: "raft-timeout", Value: time.Second, Usage: "raft heartbeat and election timeout"},
					&cli.DurationFlag{Name: "heartbeat", Value: 2 * time.Second, Usage: "idle workers' heartbeat interval"},
					&cli.DurationFlag{Name: "wait-timeout", Value: 30 * time.Minute, Usage: "how long a job that lost its workers waits for them"},
					&cli.DurationFlag{Name: "worker-gc", Value: time.Hour, Usage: "forget workers silent for this long"},
					&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
					&cli.StringFlag{Name: "nats-tls-cert", Usage: "TLS certificate (PEM) of the embedded NATS server's client port"},
					&cli.StringFlag{Name: "nats-tls-key", Usage: "its key (PEM)"},
					&cli.StringFlag{Name: "nats-tls-ca", Usage: "require NATS client certificates signed by this CA (PEM)"},
					&cli.StringFlag{Name: "raft-tls-cert", Usage: "mutual TLS on the raft transport: this coordinator's certificate (PEM)"},
					&cli.StringFlag{Name: "raft-tls-key", Usage: "its key (PEM)"},
					&cli.StringFlag{Name: "raft-tls-ca", Usage: "the CA (PEM) that signed every coordinator's raft certificate"},
					httpAddrFlag,
				), telemetryFlags...),
				Action: coordStart,
			},
			{
				Name:  "add-voter",
				Usage: "add a coordinator to the raft cluster (what --join does)",
				Flags: withNATS(coordFlag, tokenFlag,
					&cli.StringFlag{Name: "id", Required: true}, &cli.StringFlag{Name: "raft-addr", Required: true}),
				Action: func(c *cli.Context) error {
					var ci proto.ClusterInfo
					if err := apiCall(c, proto.SubjectAddVoter, proto.AddVoterRequest{ID: c.String("id"), RaftAddr: c.String("raft-addr")}, &ci); err != nil {
						return err
					}
					printServers(c, ci)
					return nil
				},
			},
			{
				Name:  "remove-voter",
				Usage: "remove a coordinator from the raft cluster",
				Flags: withNATS(coordFlag, tokenFlag, &cli.StringFlag{Name: "id", Required: true}),
				Action: func(c *cli.Context) error {
					var ci proto.ClusterInfo
					if err := apiCall(c, proto.SubjectRemoveVoter, proto.RemoveVoterRequest{ID: c.String("id")}, &ci); err != nil {
						return err
					}
					printServers(c, ci)
					return nil
				},
			},
		},
	}
}

func printServers(c *cli.Context, ci proto.ClusterInfo) {
	for _, s := range ci.Servers {
		mark := ""
		if s.Leader {
			mark = " (leader)"
		}
		fmt.Fprintf(c.App.Writer, "%s %s%s\n", s.ID, s.RaftAddr, mark)
	}
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, cli.Exit(fmt.Sprintf("--log-level %q: want debug, info, warn or error", s), 2)
	}
	return l, nil
}

func coordStart(c *cli.Context) error {
	level, err := parseLevel(c.String("log-level"))
	if err != nil {
		return err
	}
	log, err := newLogger(c, level)
	if err != nil {
		return err
	}
	cfg := coordinator.DefaultConfig()
	cfg.ID, cfg.DataDir, cfg.RaftAddr = c.String("id"), c.String("data-dir"), c.String("raft-addr")
	cfg.Bootstrap, cfg.Join = c.Bool("bootstrap"), c.String("join")
	cfg.NATSHost, cfg.NATSPort = c.String("nats-host"), c.Int("nats-port")
	cfg.NATSClusterAddr, cfg.NATSRoutes, cfg.NATSURL = c.String("nats-cluster-addr"), splitList(c.StringSlice("nats-routes")), c.String("nats-url")
	cfg.Token = c.String("token")
	cfg.JetStream = c.Bool("jetstream")
	cfg.NATSUser, cfg.NATSPassword = c.String("nats-user"), c.String("nats-password")
	cfg.NATSTLSCert, cfg.NATSTLSKey, cfg.NATSTLSCA = c.String("nats-tls-cert"), c.String("nats-tls-key"), c.String("nats-tls-ca")
	cfg.RaftTLSCert, cfg.RaftTLSKey, cfg.RaftTLSCA = c.String("raft-tls-cert"), c.String("raft-tls-key"), c.String("raft-tls-ca")
	cfg.Client = natsClientOptions(c)
	cfg.RaftTimeout, cfg.Heartbeat, cfg.WaitTimeout = c.Duration("raft-timeout"), c.Duration("heartbeat"), c.Duration("wait-timeout")
	cfg.WorkerGC = c.Duration("worker-gc")
	cfg.Logger = log
	tel, closeTel, err := setupTelemetry(c, "herd-coord", cfg.ID, log)
	if err != nil {
		return err
	}
	// Deferred first, so it runs last: the spans of the shutdown itself
	// are flushed too.
	defer closeTel()
	cfg.Telemetry = tel
	if cfg.NATSURL == "" {
		// The embedded server relays the workers' all-reduce traffic.
		defer natsutil.TuneRelayGC()()
	}
	srv, err := coordinator.Start(cfg)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	fmt.Fprintf(c.App.Writer, "coordinator %s running: nats %s, raft %s, data %s\n", cfg.ID, srv.ClientURL(), cfg.RaftAddr, cfg.DataDir)
	stopLive, err := startLive(c, c.App.Writer, srv, log)
	if err != nil {
		_ = srv.Close()
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	log.Info("shutting down")
	stopLive()
	if err := srv.Close(); err != nil {
		return cli.Exit(err.Error(), 1)
	}
	return nil
}

// splitList splits comma-separated entries of a repeatable flag.
func splitList(vs []string) []string {
	var out []string
	for _, v := range vs {
		for _, p := range splitComma(v) {
			if p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}

// apiCall connects to --coord and calls the API with --token, turning
// errors into messages that say what to do.
func apiCall(c *cli.Context, subject string, req, res any) error {
	token := c.String("token")
	if token == "" {
		return cli.Exit("no join token: pass --token or set HERD_TOKEN (the --token the coordinators were started with)", 2)
	}
	nc, err := dialCoord(c.String("coord"), natsClientOptions(c))
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	defer nc.Close()
	timeout := 15 * time.Second
	if c.IsSet("timeout") {
		timeout = c.Duration("timeout")
	}
	ctx, cancel := context.WithTimeout(c.Context, timeout)
	defer cancel()
	if err := proto.Call(ctx, nc, subject, token, req, res); err != nil {
		return cli.Exit(describeCallErr(c.String("coord"), err), 1)
	}
	return nil
}
