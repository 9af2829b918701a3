package collective

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/herdml/herd/internal/natsutil"
)

// natsGroup starts an embedded server with maxPayload and opens n
// connections, one per member.
func natsServer(t *testing.T, maxPayload int32) string {
	t.Helper()
	s, url, err := natsutil.StartEmbedded(natsutil.EmbeddedOptions{MaxPayload: maxPayload})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return url
}

func natsConns(t *testing.T, url string, n int, noEcho bool) []*nats.Conn {
	t.Helper()
	ncs := make([]*nats.Conn, n)
	for r := range ncs {
		nc, err := natsutil.Connect(url, natsutil.ConnectOptions{Name: fmt.Sprintf("m%d", r), NoEcho: noEcho})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		ncs[r] = nc
	}
	return ncs
}

func transports(ncs []*nats.Conn) []Transport {
	ts := make([]Transport, len(ncs))
	for r, nc := range ncs {
		ts[r] = NewNATSTransport(nc)
	}
	return ts
}

func TestNATSAllReduceMatchesOracle(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, tc := range []struct {
		n          int
		maxPayload int32
		noEcho     bool
		algo       Algorithm
		comp       Compression
	}{
		{4, 64 << 10, false, AlgoRSAG, CompressNone}, // many chunks per shard
		{4, 64 << 10, true, AlgoRSAG, CompressBF16},
		{3, 1 << 20, true, AlgoDirect, CompressFP16},
		{5, 8 << 20, false, AlgoAuto, CompressNone},
		{2, 1 << 20, true, AlgoAuto, CompressBF16},
	} {
		t.Run(fmt.Sprintf("n=%d/payload=%d/noecho=%v/%s/%s", tc.n, tc.maxPayload, tc.noEcho, tc.algo, tc.comp), func(t *testing.T) {
			url := natsServer(t, tc.maxPayload)
			cfg := DefaultConfig()
			cfg.Timeout = 30 * time.Second
			cfg.Algorithm, cfg.Compression = tc.algo, tc.comp
			ms, err := JoinAll(context.Background(), transports(natsConns(t, url, tc.n, tc.noEcho)), "job1", 1, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer CloseAll(ms)
			if got, limit := ms[0].ChunkBytes(), int(tc.maxPayload)-HeaderRoom; got > limit {
				t.Fatalf("chunk %d bytes exceeds max payload room %d", got, limit)
			}
			for _, size := range []int{0, 1, tc.n + 1, 10007, 300001} {
				for _, op := range []Op{Sum, Mean} {
					in := randomInputs(rng, tc.n, size)
					bufs := clone2(in)
					for r, err := range AllReduceAll(context.Background(), ms, bufs, op) {
						if err != nil {
							t.Fatalf("size %d rank %d: %v", size, r, err)
						}
					}
					want := oracle(in, op, tc.comp.encoding())
					identical(t, fmt.Sprintf("size %d %v", size, op), bufs)
					for r := range bufs {
						sameBits(t, fmt.Sprintf("size %d %v rank %d", size, op, r), bufs[r], want)
					}
				}
			}
		})
	}
}

// TestNATSConnectionKilledMidCall: a member's connection is closed while a
// large all-reduce is in flight; all survivors return an error within the
// timeout, and the next epoch works on the survivors' connections.
func TestNATSConnectionKilledMidCall(t *testing.T) {
	url := natsServer(t, 1<<20)
	ncs := natsConns(t, url, 4, true)
	cfg := DefaultConfig()
	cfg.Timeout = 2 * time.Second
	cfg.Algorithm = AlgoRSAG
	ms, err := JoinAll(context.Background(), transports(ncs), "job1", 1, cfg)
	if err != nil {
		t.Fatal(err)
	}
	in := randomInputs(rand.New(rand.NewPCG(1, 2)), 4, 4<<20)
	bufs := clone2(in)
	errs := make([]error, 4)
	done := make(chan struct{}, 4)
	start := time.Now()
	for r, m := range ms {
		go func() { errs[r] = m.AllReduce(context.Background(), bufs[r], Sum); done <- struct{}{} }()
	}
	checkFor(t, 10*time.Second, 100*time.Microsecond, func() error {
		if ncs[1].Stats().OutMsgs < 6 { // hello + a few chunks
			return errors.New("rank 1 has not sent data yet")
		}
		return nil
	})
	ncs[1].Close()
	for range 4 {
		<-done
	}
	survivorsFail(t, errs, 1, cfg.Timeout+5*time.Second, time.Since(start), ErrTimeout, ErrAborted)
	if errs[1] == nil {
		t.Fatal("killed member succeeded")
	}
	CloseAll(ms)

	nc, err := natsutil.Connect(url, natsutil.ConnectOptions{Name: "m1b", NoEcho: true})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ts := transports([]*nats.Conn{ncs[0], nc, ncs[2], ncs[3]})
	cfg.Timeout = time.Minute // a loaded test machine may be slow
	ms2, err := JoinAll(context.Background(), ts, "job1", 2, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer CloseAll(ms2)
	bufs = clone2(in)
	for r, err := range AllReduceAll(context.Background(), ms2, bufs, Sum) {
		if err != nil {
			t.Fatalf("epoch 2 rank %d: %v", r, err)
		}
	}
	want := oracle(in, Sum, encF32)
	identical(t, "epoch 2", bufs)
	for r := range bufs {
		sameBits(t, fmt.Sprintf("epoch 2 rank %d", r), bufs[r], want)
	}
}

// TestNATSSharedConnection: several members (of one group) may share a
// connection when echo is on.
func TestNATSSharedConnection(t *testing.T) {
	url := natsServer(t, 1<<20)
	ncs := natsConns(t, url, 1, false)
	tr := NewNATSTransport(ncs[0])
	cfg := DefaultConfig()
	cfg.Timeout = 20 * time.Second
	ms, err := JoinAll(context.Background(), []Transport{tr, tr, tr}, "shared", 1, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer CloseAll(ms)
	in := randomInputs(rand.New(rand.NewPCG(3, 4)), 3, 100000)
	bufs := clone2(in)
	for _, err := range AllReduceAll(context.Background(), ms, bufs, Mean) {
		if err != nil {
			t.Fatal(err)
		}
	}
	sameBits(t, "rank 2", bufs[2], oracle(in, Mean, encF32))
}

func BenchmarkNATSAllReduce(b *testing.B) {
	for _, n := range []int{2, 4} {
		for _, size := range []int{1 << 20, 16 << 20} {
			for _, comp := range []Compression{CompressNone, CompressBF16} {
				for _, tk := range []string{"natsgo", "raw"} {
					b.Run(fmt.Sprintf("n=%d/bytes=%d/%s/%s", n, size, comp, tk), func(b *testing.B) {
						s, url, err := natsutil.StartEmbedded(natsutil.EmbeddedOptions{})
						if err != nil {
							b.Fatal(err)
						}
						defer func() { s.Shutdown(); s.WaitForShutdown() }()
						ts := make([]Transport, n)
						for r := range ts {
							if tk == "raw" {
								tr, err := DialRawNATS(url, RawNATSOptions{NoEcho: true})
								if err != nil {
									b.Fatal(err)
								}
								defer tr.Close()
								ts[r] = tr
								continue
							}
							nc, err := natsutil.Connect(url, natsutil.ConnectOptions{NoEcho: true})
							if err != nil {
								b.Fatal(err)
							}
							defer nc.Close()
							ts[r] = NewNATSTransport(nc)
						}
						cfg := DefaultConfig()
						cfg.Compression = comp
						ms, err := JoinAll(context.Background(), ts, "bench", 1, cfg)
						if err != nil {
							b.Fatal(err)
						}
						defer CloseAll(ms)
						bufs := make([][]float32, n)
						for r := range bufs {
							bufs[r] = make([]float32, size/4)
						}
						b.SetBytes(int64(size))
						cpu0 := cpuTime()
						b.ResetTimer()
						for b.Loop() {
							for _, err := range AllReduceAll(context.Background(), ms, bufs, Mean) {
								if err != nil {
									b.Fatal(err)
								}
							}
						}
						b.ReportMetric(float64(cpuTime()-cpu0)/1e6/float64(b.N), "cpu-ms/op")
						sec := b.Elapsed().Seconds() / float64(b.N)
						b.ReportMetric(float64(size)/sec/1e6*2*float64(n-1)/float64(n), "busbw-MB/s")
					})
				}
			}
		}
	}
}

// cpuTime is the process's user+system CPU time (server and members, all
// in this process): a figure that, unlike wall time, barely depends on
// what else the machine is running.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
