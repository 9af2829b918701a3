package natsutil

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T, o EmbeddedOptions) (*server.Server, string) {
	t.Helper()
	s, url, err := StartEmbedded(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s, url
}

func connect(t *testing.T, url string, o ConnectOptions) *nats.Conn {
	t.Helper()
	nc, err := Connect(url, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// roundTrip checks that nc can publish to and receive from itself.
func roundTrip(t *testing.T, nc *nats.Conn) {
	t.Helper()
	ch := make(chan *nats.Msg, 1)
	sub, err := nc.ChanSubscribe("rt", ch)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Publish("rt", []byte("x")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no round trip")
	}
}

func TestStartEmbeddedDefaults(t *testing.T) {
	s, url := start(t, EmbeddedOptions{})
	if !strings.HasPrefix(url, "nats://127.0.0.1:") {
		t.Fatalf("url %q", url)
	}
	if s.JetStreamEnabled() {
		t.Fatal("JetStream on by default")
	}
	nc := connect(t, url, ConnectOptions{Name: "t"})
	if got := nc.MaxPayload(); got != DefaultMaxPayload {
		t.Fatalf("max payload %d, want %d", got, DefaultMaxPayload)
	}
	roundTrip(t, nc)
	// A second server gets another random port.
	_, url2 := start(t, EmbeddedOptions{MaxPayload: 1 << 20})
	if url2 == url {
		t.Fatal("same port twice")
	}
}

func TestStartEmbeddedChosenPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	_, url := start(t, EmbeddedOptions{Port: port})
	if !strings.HasSuffix(url, ":"+itoa(port)) {
		t.Fatalf("url %q, want port %d", url, port)
	}
}

func itoa(i int) string { return big.NewInt(int64(i)).String() }

func TestJetStreamOptional(t *testing.T) {
	s, _ := start(t, EmbeddedOptions{JetStream: true, StoreDir: t.TempDir()})
	if !s.JetStreamEnabled() {
		t.Fatal("JetStream not enabled")
	}
}

func TestUserPasswordAndToken(t *testing.T) {
	_, url := start(t, EmbeddedOptions{Username: "u", Password: "p"})
	roundTrip(t, connect(t, url, ConnectOptions{User: "u", Password: "p"}))
	if nc, err := Connect(url, ConnectOptions{User: "u", Password: "wrong"}); err == nil {
		nc.Close()
		t.Fatal("wrong password accepted")
	}
	_, url = start(t, EmbeddedOptions{Token: "s3cret"})
	roundTrip(t, connect(t, url, ConnectOptions{Token: "s3cret"}))
	if nc, err := Connect(url, ConnectOptions{}); err == nil {
		nc.Close()
		t.Fatal("missing token accepted")
	}
}

func TestNkeySeedFile(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	seedFile := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	_, url := start(t, EmbeddedOptions{Nkeys: []string{pub}})
	roundTrip(t, connect(t, url, ConnectOptions{NkeySeedFile: seedFile}))
	if _, err := Connect(url, ConnectOptions{NkeySeedFile: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Fatal("missing seed file accepted")
	}
}

// writeCert writes a PEM certificate and key signed by parent (self-signed
// when parent is nil) and returns the files and the cert.
func writeCert(t *testing.T, dir, name string, isCA bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (certFile, keyFile string, cert *x509.Certificate, key *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	if isCA {
		tmpl.IsCA = true
		tmpl.BasicConstraintsValid = true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent, parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	certFile = filepath.Join(dir, name+".pem")
	keyFile = filepath.Join(dir, name+"-key.pem")
	kb, _ := x509.MarshalECPrivateKey(key)
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, cert, key
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	caFile, _, ca, caKey := writeCert(t, dir, "ca", true, nil, nil)
	srvCert, srvKey, _, _ := writeCert(t, dir, "server", false, ca, caKey)
	cliCert, cliKey, _, _ := writeCert(t, dir, "client", false, ca, caKey)
	_, url := start(t, EmbeddedOptions{TLSCert: srvCert, TLSKey: srvKey, TLSCA: caFile})
	if !strings.HasPrefix(url, "tls://") {
		t.Fatalf("url %q", url)
	}
	roundTrip(t, connect(t, url, ConnectOptions{TLSCA: caFile, TLSCert: cliCert, TLSKey: cliKey}))
	if nc, err := Connect(url, ConnectOptions{TLSCA: caFile}); err == nil {
		nc.Close()
		t.Fatal("client without certificate accepted")
	}
}

// TestFastPublisherNoSlowConsumer: a publisher pushing 1 MiB messages as
// fast as it can to a subscriber whose callback is slow loses nothing and
// is not disconnected.
func TestFastPublisherNoSlowConsumer(t *testing.T) {
	_, url := start(t, EmbeddedOptions{})
	var asyncErrs atomic.Int64
	sub := connect(t, url, ConnectOptions{})
	sub.SetErrorHandler(func(*nats.Conn, *nats.Subscription, error) { asyncErrs.Add(1) })
	pub := connect(t, url, ConnectOptions{})
	const n = 300
	var got atomic.Int64
	done := make(chan struct{})
	s, err := Subscribe(sub, "bulk", func(*nats.Msg) {
		time.Sleep(200 * time.Microsecond)
		if got.Add(1) == n {
			close(done)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Unsubscribe()
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 1<<20)
	for range n {
		if err := pub.Publish("bulk", payload); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("received %d of %d", got.Load(), n)
	}
	if asyncErrs.Load() != 0 || sub.IsClosed() || pub.IsClosed() {
		t.Fatalf("async errors %d, closed %v/%v", asyncErrs.Load(), sub.IsClosed(), pub.IsClosed())
	}
}

func TestEmbeddedOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		o      EmbeddedOptions
		fields []string
	}{
		{"zero", EmbeddedOptions{}, nil},
		{"payload", EmbeddedOptions{MaxPayload: HardMaxPayload + 1}, []string{"MaxPayload"}},
		{"pending below payload", EmbeddedOptions{MaxPayload: 4 << 20, MaxPending: 1 << 20}, []string{"MaxPending"}},
		{"several", EmbeddedOptions{Port: -2, WriteDeadline: -1, Token: "t", Username: "u"}, []string{"Port", "WriteDeadline", "Token", "Username/Password"}},
		{"tls", EmbeddedOptions{TLSCert: "c", TLSCA: "a"}, []string{"TLSCert/TLSKey"}},
		{"jetstream", EmbeddedOptions{JetStream: true}, []string{"StoreDir"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Validate()
			if len(tc.fields) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, f := range tc.fields {
				if !strings.Contains(err.Error(), f+":") {
					t.Errorf("error %q does not name %s", err, f)
				}
			}
		})
	}
	if _, _, err := StartEmbedded(EmbeddedOptions{MaxPayload: 1}); err == nil {
		t.Fatal("StartEmbedded accepted invalid options")
	}
}

func TestTuneRelayGC(t *testing.T) {
	for _, tc := range []struct {
		name, gogc string
		want       int
	}{
		{"unset: the relay's target", "", RelayGCPercent},
		{"GOGC set: left alone", "150", 150},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOGC", tc.gogc)
			before := debug.SetGCPercent(150)
			defer debug.SetGCPercent(before)
			restore := TuneRelayGC()
			if got := debug.SetGCPercent(-1); got != tc.want {
				t.Fatalf("GC percent %d, want %d", got, tc.want)
			} else {
				debug.SetGCPercent(got)
			}
			restore()
			if got := debug.SetGCPercent(150); got != 150 {
				t.Fatalf("after restore: GC percent %d, want 150", got)
			}
		})
	}
}

// levels records the level of every log record.
type levels struct{ got []slog.Level }

func (h *levels) Enabled(context.Context, slog.Level) bool { return true }
func (h *levels) Handle(_ context.Context, r slog.Record) error {
	h.got = append(h.got, r.Level)
	return nil
}
func (h *levels) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *levels) WithGroup(string) slog.Handler      { return h }

func TestServerLoggerLevels(t *testing.T) {
	for _, tc := range []struct {
		name string
		log  func(server.Logger)
		want slog.Level
	}{
		{"routine notice", func(l server.Logger) { l.Noticef("%s - Client connection created", "127.0.0.1:5000") }, slog.LevelDebug},
		{"slow consumer cut off", func(l server.Logger) { l.Noticef("Slow Consumer Detected: MaxPending of %d Exceeded", 1<<27) }, slog.LevelWarn},
		{"slow consumer write deadline", func(l server.Logger) {
			l.Noticef("Slow Consumer %s: WriteDeadline of %v exceeded", "Detected", time.Second)
		}, slog.LevelWarn},
		{"warning", func(l server.Logger) { l.Warnf("Producer was stalled for a total of %v", time.Millisecond) }, slog.LevelWarn},
		{"error", func(l server.Logger) { l.Errorf("listen: %v", "in use") }, slog.LevelError},
		{"trace", func(l server.Logger) { l.Tracef("<<- [PUB x 1]") }, slog.LevelDebug},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &levels{}
			tc.log(ServerLogger(slog.New(h)))
			if len(h.got) != 1 || h.got[0] != tc.want {
				t.Fatalf("levels %v, want [%v]", h.got, tc.want)
			}
		})
	}
}
