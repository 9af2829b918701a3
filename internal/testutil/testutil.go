// Package testutil is the in-process test harness for the coordinator and
// the workers: free ports, polling instead of sleeping (CheckFor), a logger
// that writes to t.Log, goroutine-leak checks, and MakeCluster, which starts
// n coordinators with embedded, route-clustered NATS servers and short raft
// timeouts on 127.0.0.1. It is a non-test package (like hashicorp/raft's
// testing.go) so that tests of several packages share it.
package testutil

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// CheckFor calls fn every sleep until it returns nil, failing the test with
// fn's last error after wait.
func CheckFor(t testing.TB, wait, sleep time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(wait)
	var err error
	for {
		if err = fn(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", wait, err)
		}
		time.Sleep(sleep)
	}
}

// Logger returns a slog logger writing to t.Log (debug level), silent after
// the test ends.
func Logger(t testing.TB) *slog.Logger {
	w := &tlogWriter{t: t}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlogWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *tlogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *tlogWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// VerifyNoLeaks fails the test if goroutines other than the runtime's and
// known library background ones outlive it. Call it first in a test
// (deferred checks run last).
func VerifyNoLeaks(t testing.TB) {
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		goleak.VerifyNone(t, LeakOptions()...)
	})
}

// LeakOptions are the goroutines goleak ignores: process-wide background
// goroutines of libraries (they are not owned by any test).
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*Server).logRejectedTLSConns"),
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("github.com/hashicorp/raft-boltdb/v2.(*BoltStore).runMetricsCollector"),
		goleak.IgnoreAnyFunction("github.com/hashicorp/go-metrics.(*InmemSignal).run"),
		goleak.IgnoreAnyFunction("github.com/armon/go-metrics.(*InmemSignal).run"),
	}
}

// Context returns a context ending with the test or after d.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Addr formats a loopback host:port.
func Addr(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }
