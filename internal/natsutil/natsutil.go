// Package natsutil runs an embedded NATS server and opens client
// connections to NATS with the settings herd needs for bulk traffic: a raised
// max_payload, server write deadlines and pending limits that let fast
// publishers through without slow-consumer disconnects, and subscriptions
// whose client-side pending limits do not drop messages. The coordinator
// (single-node mode), the collective benchmarks and tests use it; it knows
// nothing about what flows over the connections.
package natsutil

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Size limits for EmbeddedOptions.MaxPayload.
const (
	// DefaultMaxPayload is the max_payload StartEmbedded configures when
	// none is given: 8 MiB, the ceiling nats-server recommends.
	DefaultMaxPayload = 8 << 20
	// HardMaxPayload is the largest max_payload nats-server accepts.
	HardMaxPayload = 64 << 20
	// DefaultWriteDeadline is the server's write deadline per client when
	// none is given. nats-server's own default (10s) is short for a client
	// that is busy reducing a large buffer.
	DefaultWriteDeadline = 30 * time.Second
)

// Errors returned by this package.
var (
	// ErrNotReady is returned when the embedded server does not accept
	// connections within EmbeddedOptions.ReadyTimeout.
	ErrNotReady = errors.New("natsutil: embedded server not ready")
)

// EmbeddedOptions configures StartEmbedded. The zero value is valid: a
// server on 127.0.0.1, a random port, max_payload 8 MiB, no auth, no
// JetStream, no logging.
type EmbeddedOptions struct {
	// Host to listen on. Default "127.0.0.1".
	Host string
	// Port to listen on; 0 picks a random free port.
	Port int
	// MaxPayload is the largest message (headers + data) the server
	// accepts, in bytes. 0 means DefaultMaxPayload (8 MiB); valid range
	// 1 KiB .. HardMaxPayload (64 MiB).
	MaxPayload int32
	// MaxPending is the most bytes the server buffers for one client
	// before it counts as a slow consumer. 0 means max(64 MiB, 16 ×
	// MaxPayload); it must be at least MaxPayload.
	MaxPending int64
	// WriteDeadline is how long the server waits on a blocked write to a
	// client before it disconnects it. 0 means DefaultWriteDeadline (30s).
	WriteDeadline time.Duration

	// Username and Password, when set, are required of every client.
	Username, Password string
	// Token, when set, is required of every client (exclusive with
	// Username/Password).
	Token string
	// Nkeys lists user public keys (U...) allowed to connect by signing
	// the server's nonce with their seed.
	Nkeys []string
	// TLSCert and TLSKey (PEM files) enable TLS; TLSCA, when set, makes
	// the server verify client certificates against that CA.
	TLSCert, TLSKey, TLSCA string

	// JetStream enables JetStream with its store in StoreDir (required
	// then; use a t.TempDir() in tests).
	JetStream bool
	StoreDir  string

	// ReadyTimeout bounds the wait for the server to accept connections.
	// Default 10s.
	ReadyTimeout time.Duration
	// Logger receives the server's log at Debug (notices) and Warn/Error
	// levels; nil disables server logging.
	Logger *slog.Logger
}

// Validate returns every problem with o, joined.
func (o EmbeddedOptions) Validate() error {
	var errs []error
	if o.Port < 0 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("natsutil: Port: %d out of range 0..65535", o.Port))
	}
	if o.MaxPayload != 0 && (o.MaxPayload < 1024 || o.MaxPayload > HardMaxPayload) {
		errs = append(errs, fmt.Errorf("natsutil: MaxPayload: %d out of range 1024..%d", o.MaxPayload, HardMaxPayload))
	}
	if o.MaxPending < 0 {
		errs = append(errs, fmt.Errorf("natsutil: MaxPending: %d is negative", o.MaxPending))
	}
	if o.MaxPending > 0 && o.MaxPending < int64(o.maxPayload()) {
		errs = append(errs, fmt.Errorf("natsutil: MaxPending: %d is below MaxPayload %d", o.MaxPending, o.maxPayload()))
	}
	if o.WriteDeadline < 0 {
		errs = append(errs, fmt.Errorf("natsutil: WriteDeadline: %v is negative", o.WriteDeadline))
	}
	if o.Token != "" && (o.Username != "" || o.Password != "") {
		errs = append(errs, errors.New("natsutil: Token: set together with Username/Password; use one"))
	}
	if o.Token != "" && len(o.Nkeys) > 0 {
		errs = append(errs, errors.New("natsutil: Token: set together with Nkeys; use one"))
	}
	if (o.Username == "") != (o.Password == "") {
		errs = append(errs, errors.New("natsutil: Username/Password: set both or neither"))
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		errs = append(errs, errors.New("natsutil: TLSCert/TLSKey: set both or neither"))
	}
	if o.TLSCA != "" && o.TLSCert == "" {
		errs = append(errs, errors.New("natsutil: TLSCA: needs TLSCert and TLSKey"))
	}
	if o.JetStream && o.StoreDir == "" {
		errs = append(errs, errors.New("natsutil: StoreDir: required when JetStream is on"))
	}
	return errors.Join(errs...)
}

func (o EmbeddedOptions) maxPayload() int32 {
	if o.MaxPayload == 0 {
		return DefaultMaxPayload
	}
	return o.MaxPayload
}

// ServerOptions translates o into nats-server options (after Validate).
func (o EmbeddedOptions) ServerOptions() (*server.Options, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	so := &server.Options{
		Host:          o.Host,
		Port:          o.Port,
		MaxPayload:    o.maxPayload(),
		MaxPending:    o.MaxPending,
		WriteDeadline: o.WriteDeadline,
		Username:      o.Username,
		Password:      o.Password,
		Authorization: o.Token,
		JetStream:     o.JetStream,
		StoreDir:      o.StoreDir,
		NoSigs:        true,
		NoLog:         o.Logger == nil,
		// The HTTP monitor stays off; MaxControlLine default is fine.
	}
	if so.Host == "" {
		so.Host = "127.0.0.1"
	}
	if so.Port == 0 {
		so.Port = server.RANDOM_PORT
	}
	if so.MaxPending == 0 {
		so.MaxPending = max(int64(64<<20), 16*int64(so.MaxPayload))
	}
	if so.WriteDeadline == 0 {
		so.WriteDeadline = DefaultWriteDeadline
	}
	for _, nk := range o.Nkeys {
		so.Nkeys = append(so.Nkeys, &server.NkeyUser{Nkey: nk})
	}
	if o.TLSCert != "" {
		tc := server.TLSConfigOpts{CertFile: o.TLSCert, KeyFile: o.TLSKey, CaFile: o.TLSCA, Verify: o.TLSCA != ""}
		cfg, err := server.GenTLSConfig(&tc)
		if err != nil {
			return nil, fmt.Errorf("natsutil: tls config: %w", err)
		}
		so.TLSConfig = cfg
		so.TLS = true
		so.TLSVerify = tc.Verify
		so.TLSTimeout = 5
	}
	return so, nil
}

// StartEmbedded starts a nats-server in this process and waits until it
// accepts connections. It returns the server (stop it with Shutdown and
// WaitForShutdown) and its client URL (nats:// or tls://).
func StartEmbedded(o EmbeddedOptions) (*server.Server, string, error) {
	so, err := o.ServerOptions()
	if err != nil {
		return nil, "", err
	}
	s, err := server.NewServer(so)
	if err != nil {
		return nil, "", fmt.Errorf("natsutil: new server: %w", err)
	}
	if o.Logger != nil {
		s.SetLoggerV2(slogLogger{o.Logger}, false, false, false)
	}
	go s.Start()
	wait := o.ReadyTimeout
	if wait <= 0 {
		wait = 10 * time.Second
	}
	if !s.ReadyForConnections(wait) {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, "", fmt.Errorf("%w within %v", ErrNotReady, wait)
	}
	addr, ok := s.Addr().(*net.TCPAddr)
	if !ok {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, "", fmt.Errorf("natsutil: unexpected listen address %v", s.Addr())
	}
	scheme := "nats"
	if so.TLS {
		scheme = "tls"
	}
	host := so.Host
	if host == "0.0.0.0" || host == "::" || host == "" {
		host = "127.0.0.1"
	}
	return s, fmt.Sprintf("%s://%s", scheme, net.JoinHostPort(host, strconv.Itoa(addr.Port))), nil
}

// ConnectOptions configures Connect. The zero value connects without auth
// or TLS with herd's defaults.
type ConnectOptions struct {
	// Name identifies the connection in server monitoring.
	Name string
	// User and Password authenticate with a user/password pair.
	User, Password string
	// Token authenticates with a token.
	Token string
	// NkeySeedFile authenticates with an nkey user seed (a file holding
	// "SU...").
	NkeySeedFile string
	// CredsFile authenticates with a decentralized-auth credentials file.
	CredsFile string
	// TLSCA verifies the server against this CA (PEM); TLSCert/TLSKey
	// present a client certificate. Any of them turns TLS on.
	TLSCA, TLSCert, TLSKey string
	// TLSInsecureSkipVerify disables server certificate checks (tests).
	TLSInsecureSkipVerify bool
	// Timeout bounds the dial and handshake. Default 5s.
	Timeout time.Duration
	// WriteTimeout bounds one blocked write to the server, after which
	// the connection is considered broken. Default 30s.
	WriteTimeout time.Duration
	// NoEcho stops the server from delivering this connection's own
	// messages back to it. Only set it when a single collective member
	// uses the connection; members sharing a connection need echo.
	NoEcho bool
	// MaxReconnects is how often the client retries a lost server; 0
	// means nats.go's default (60), -1 forever.
	MaxReconnects int
	// Logger receives asynchronous connection errors (slow consumer,
	// disconnects); nil drops them.
	Logger *slog.Logger
}

// Subscription pending limits Subscribe applies: no message-count limit and
// 1 GiB of buffered payload per subscription, far above what a collective
// call has in flight, so a busy receiver is never cut off.
const (
	PendingMsgsLimit  = -1
	PendingBytesLimit = 1 << 30
)

// Connect opens a NATS connection to url (comma-separated for a cluster)
// with o. Subscriptions should be made with Subscribe, which lifts the
// client-side pending limits.
func Connect(url string, o ConnectOptions) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Timeout(orDefault(o.Timeout, 5*time.Second)),
		nats.FlusherTimeout(orDefault(o.WriteTimeout, 30*time.Second)),
		// A larger write buffer coalesces many small publishes; large
		// ones are flushed as they come.
		nats.WriteBufferSize(1 << 20),
	}
	if o.Name != "" {
		opts = append(opts, nats.Name(o.Name))
	}
	if o.User != "" || o.Password != "" {
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.Token != "" {
		opts = append(opts, nats.Token(o.Token))
	}
	if o.NkeySeedFile != "" {
		nk, err := nats.NkeyOptionFromSeed(o.NkeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("natsutil: nkey seed %s: %w", o.NkeySeedFile, err)
		}
		opts = append(opts, nk)
	}
	if o.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	if o.TLSCA != "" {
		opts = append(opts, nats.RootCAs(o.TLSCA))
	}
	if o.TLSCert != "" || o.TLSKey != "" {
		opts = append(opts, nats.ClientCert(o.TLSCert, o.TLSKey))
	}
	if o.TLSInsecureSkipVerify {
		opts = append(opts, nats.Secure(&tls.Config{InsecureSkipVerify: true})) //nolint:gosec // opt-in, tests
	}
	if o.NoEcho {
		opts = append(opts, nats.NoEcho())
	}
	if o.MaxReconnects != 0 {
		opts = append(opts, nats.MaxReconnects(o.MaxReconnects))
	}
	if o.Logger != nil {
		l := o.Logger
		opts = append(opts,
			nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
				subj := ""
				if sub != nil {
					subj = sub.Subject
				}
				l.Warn("nats async error", "subject", subj, "err", err)
			}),
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
				if err != nil {
					l.Warn("nats disconnected", "err", err)
				}
			}),
		)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("natsutil: connect %s: %w", url, err)
	}
	return nc, nil
}

// Subscribe subscribes cb to subject on nc and lifts the subscription's
// pending limits (PendingMsgsLimit, PendingBytesLimit) so that a callback
// that is briefly slow does not lose messages to nats.go's slow-consumer
// protection.
func Subscribe(nc *nats.Conn, subject string, cb nats.MsgHandler) (*nats.Subscription, error) {
	sub, err := nc.Subscribe(subject, cb)
	if err != nil {
		return nil, fmt.Errorf("natsutil: subscribe %s: %w", subject, err)
	}
	if err := sub.SetPendingLimits(PendingMsgsLimit, PendingBytesLimit); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("natsutil: pending limits %s: %w", subject, err)
	}
	return sub, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// slogLogger adapts slog to nats-server's Logger interface.
// ServerLogger adapts l for nats-server's SetLoggerV2: warnings and errors
// keep their level, notices, debug and trace lines go to Debug (nats-server
// notices every connection), except the notices that a client was cut off
// or stalled as a slow consumer, which go to Warn: they explain a failed
// all-reduce.
func ServerLogger(l *slog.Logger) server.Logger { return slogLogger{l} }

type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Noticef(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if strings.Contains(msg, "Slow Consumer") {
		s.l.Warn(msg)
		return
	}
	s.l.Debug(msg)
}
func (s slogLogger) Warnf(format string, v ...any)  { s.l.Warn(fmt.Sprintf(format, v...)) }
func (s slogLogger) Fatalf(format string, v ...any) { s.l.Error(fmt.Sprintf(format, v...)) }
func (s slogLogger) Errorf(format string, v ...any) { s.l.Error(fmt.Sprintf(format, v...)) }
func (s slogLogger) Debugf(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s slogLogger) Tracef(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }
