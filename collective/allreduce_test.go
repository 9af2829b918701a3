package collective

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// checkFor polls f every sleep until it returns nil or wait has passed.
func checkFor(t *testing.T, wait, sleep time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v: %v", wait, err)
		}
		time.Sleep(sleep)
	}
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Timeout = 20 * time.Second
	cfg.ChunkBytes = MinChunkBytes // 1024 floats: small buffers span many chunks
	return cfg
}

// hubGroup joins n members on one hub, each on its own endpoint "m<r>".
func hubGroup(t *testing.T, hub *Hub, group string, epoch uint64, n int, cfg Config) ([]*HubTransport, []*Member) {
	t.Helper()
	hts := make([]*HubTransport, n)
	ts := make([]Transport, n)
	for r := range n {
		hts[r] = hub.Connect(fmt.Sprintf("m%d", r))
		ts[r] = hts[r]
	}
	ms, err := JoinAll(context.Background(), ts, group, epoch, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { CloseAll(ms) })
	return hts, ms
}

// oracle is the reference: for every element, q(x0) + q(x1) + ... in rank
// order in float32, then /N for Mean, then q.
func oracle(inputs [][]float32, op Op, enc encoding) []float32 {
	n := len(inputs[0])
	out := make([]float32, n)
	for i := range out {
		s := quantize(enc, inputs[0][i])
		for r := 1; r < len(inputs); r++ {
			s += quantize(enc, inputs[r][i])
		}
		if op == Mean {
			s /= float32(len(inputs))
		}
		out[i] = quantize(enc, s)
		if isNaN(out[i]) {
			out[i] = math.Float32frombits(canonicalNaN)
		}
	}
	return out
}

func randomInputs(rng *rand.Rand, n, size int) [][]float32 {
	in := make([][]float32, n)
	for r := range in {
		in[r] = make([]float32, size)
		for i := range in[r] {
			switch rng.IntN(10) {
			case 0:
				in[r][i] = math.Float32frombits(rng.Uint32()) // any pattern: NaN, Inf, subnormal
			case 1:
				in[r][i] = float32(rng.NormFloat64() * 1e30)
			default:
				in[r][i] = float32(rng.NormFloat64())
			}
		}
	}
	return in
}

func clone2(in [][]float32) [][]float32 {
	out := make([][]float32, len(in))
	for r := range in {
		out[r] = append([]float32(nil), in[r]...)
	}
	return out
}

// sameBits compares with the oracle bit for bit (NaN results are the
// canonical quiet NaN on both sides).
func sameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: length %d, want %d", what, len(got), len(want))
	}
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: element %d = %v [%#08x], want %v [%#08x]", what, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
		}
	}
}

// identical checks that every member holds exactly the same bits.
func identical(t *testing.T, what string, bufs [][]float32) {
	t.Helper()
	for r := 1; r < len(bufs); r++ {
		for i := range bufs[r] {
			if math.Float32bits(bufs[r][i]) != math.Float32bits(bufs[0][i]) {
				t.Fatalf("%s: rank %d element %d = %#08x, rank 0 has %#08x", what, r, i, math.Float32bits(bufs[r][i]), math.Float32bits(bufs[0][i]))
			}
		}
	}
}

func TestAllReduceMatchesOracle(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for n := 1; n <= 8; n++ {
		for _, algo := range []Algorithm{AlgoRSAG, AlgoDirect} {
			for _, comp := range []Compression{CompressNone, CompressBF16, CompressFP16} {
				t.Run(fmt.Sprintf("n=%d/%s/%s", n, algo, comp), func(t *testing.T) {
					cfg := testConfig()
					cfg.Algorithm = algo
					cfg.Compression = comp
					hub := NewHub(64 << 10)
					_, ms := hubGroup(t, hub, "g", 1, n, cfg)
					elems := ms[0].ChunkBytes() / cfg.Compression.encoding().size()
					sizes := []int{0, 1, max(n-1, 1), n, n + 1, 37, 1027, 3*elems + 5, n*elems - 1, n*elems + 1}
					for _, size := range sizes {
						for _, op := range []Op{Sum, Mean} {
							in := randomInputs(rng, n, size)
							bufs := clone2(in)
							for r, err := range AllReduceAll(context.Background(), ms, bufs, op) {
								if err != nil {
									t.Fatalf("size %d %v rank %d: %v", size, op, r, err)
								}
							}
							want := oracle(in, op, comp.encoding())
							identical(t, fmt.Sprintf("size %d %v", size, op), bufs)
							for r := range bufs {
								sameBits(t, fmt.Sprintf("size %d %v rank %d", size, op, r), bufs[r], want)
							}
						}
					}
				})
			}
		}
	}
}

func TestAllReduceNaNInf(t *testing.T) {
	inf := float32(math.Inf(1))
	nan := float32(math.NaN())
	for _, algo := range []Algorithm{AlgoRSAG, AlgoDirect} {
		for _, comp := range []Compression{CompressNone, CompressBF16, CompressFP16} {
			t.Run(fmt.Sprintf("%s/%s", algo, comp), func(t *testing.T) {
				cfg := testConfig()
				cfg.Algorithm, cfg.Compression = algo, comp
				_, ms := hubGroup(t, NewHub(0), "g", 1, 3, cfg)
				in := [][]float32{
					{1, nan, inf, inf, -inf, 0, 5, 2e38},
					{2, 1, 1, -inf, -inf, float32(math.Copysign(0, -1)), nan, 2e38},
					{3, 1, 1, 1, 1, 0, 1, 2e38},
				}
				bufs := clone2(in)
				for _, err := range AllReduceAll(context.Background(), ms, bufs, Sum) {
					if err != nil {
						t.Fatal(err)
					}
				}
				for r, b := range bufs {
					sameBits(t, fmt.Sprintf("rank %d", r), b, oracle(in, Sum, comp.encoding()))
					if !isNaN(b[1]) || b[2] != inf || !isNaN(b[3]) || b[4] != -inf || !isNaN(b[6]) {
						t.Fatalf("rank %d: NaN/Inf not propagated: %v", r, b)
					}
					if b[7] != inf { // 6e38 overflows float32 accumulation
						t.Fatalf("rank %d: overflow gave %v, want +Inf", r, b[7])
					}
				}
			})
		}
	}
}

// TestAllReduceDuplicatesAndAuto: duplicated messages are ignored, and
// auto picks direct or rsag by size with the same results.
func TestAllReduceDuplicatesAndAuto(t *testing.T) {
	cfg := testConfig()
	cfg.SmallThreshold = 4 << 10
	hub := NewHub(0)
	var dups atomic.Int64
	hub.SetFilter(func(from, to string, m *Msg) Action {
		if len(m.Data) > 0 && len(m.Data)%3 == 0 {
			dups.Add(1)
			return Duplicate
		}
		return Deliver
	})
	_, ms := hubGroup(t, hub, "g", 1, 5, cfg)
	if ms[0].Algorithm(100) != AlgoDirect || ms[0].Algorithm(100000) != AlgoRSAG {
		t.Fatalf("auto picks %s for 100 floats, %s for 100000", ms[0].Algorithm(100), ms[0].Algorithm(100000))
	}
	rng := rand.New(rand.NewPCG(9, 10))
	for _, size := range []int{100, 1023, 100000, 7} {
		for range 3 {
			in := randomInputs(rng, 5, size)
			bufs := clone2(in)
			for _, err := range AllReduceAll(context.Background(), ms, bufs, Mean) {
				if err != nil {
					t.Fatal(err)
				}
			}
			for r := range bufs {
				sameBits(t, fmt.Sprintf("size %d rank %d", size, r), bufs[r], oracle(in, Mean, encF32))
			}
		}
	}
	if dups.Load() == 0 {
		t.Fatal("filter duplicated nothing; test is vacuous")
	}
}

// TestAllReduceSkew: members call at different times; messages of the next
// call that arrive early are kept.
func TestAllReduceSkew(t *testing.T) {
	cfg := testConfig()
	cfg.Algorithm = AlgoRSAG
	_, ms := hubGroup(t, NewHub(0), "g", 1, 4, cfg)
	rng := rand.New(rand.NewPCG(11, 12))
	const calls = 6
	ins := make([][][]float32, calls)
	outs := make([][][]float32, calls)
	for k := range ins {
		ins[k] = randomInputs(rng, 4, 3000)
		outs[k] = clone2(ins[k])
	}
	errs := make(chan error, 4)
	for r, m := range ms {
		go func() {
			for k := range calls {
				if r == 3 {
					time.Sleep(5 * time.Millisecond)
				}
				if err := m.AllReduce(context.Background(), outs[k][r], Sum); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range ms {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for k := range calls {
		want := oracle(ins[k], Sum, encF32)
		for r := range ms {
			sameBits(t, fmt.Sprintf("call %d rank %d", k, r), outs[k][r], want)
		}
	}
}

func survivorsFail(t *testing.T, errs []error, skip int, within time.Duration, elapsed time.Duration, allowed ...error) {
	t.Helper()
	for r, err := range errs {
		if r == skip {
			continue
		}
		if err == nil {
			t.Fatalf("rank %d: call succeeded without a member", r)
		}
		ok := false
		for _, a := range allowed {
			ok = ok || errors.Is(err, a)
		}
		if !ok {
			t.Fatalf("rank %d: unexpected error %v", r, err)
		}
	}
	if elapsed > within {
		t.Fatalf("survivors returned after %v, bound %v", elapsed, within)
	}
}

// TestMemberKilledMidCall: a member's transport dies after it sent part of
// its data; every survivor returns within the timeout, nothing leaks, and
// the next epoch on the same transports works.
func TestMemberKilledMidCall(t *testing.T) {
	cfg := testConfig()
	cfg.Timeout = time.Second
	cfg.Algorithm = AlgoRSAG
	hub := NewHub(0)
	hts, ms := hubGroup(t, hub, "g", 1, 4, cfg)
	var sent atomic.Int64
	hub.SetFilter(func(from, to string, m *Msg) Action {
		if from == "m2" && sent.Add(1) > 3 {
			return Drop // rank 2 stops answering...
		}
		return Deliver
	})
	in := randomInputs(rand.New(rand.NewPCG(1, 1)), 4, 200000)
	bufs := clone2(in)
	start := time.Now()
	errs := make([]error, 4)
	done := make(chan int, 4)
	for r, m := range ms {
		go func() { errs[r] = m.AllReduce(context.Background(), bufs[r], Sum); done <- r }()
	}
	checkFor(t, 5*time.Second, time.Millisecond, func() error {
		if sent.Load() <= 3 {
			return errors.New("rank 2 has not sent yet")
		}
		return nil
	})
	_ = hts[2].Close() // ...and is killed
	for range 4 {
		<-done
	}
	survivorsFail(t, errs, 2, cfg.Timeout+3*time.Second, time.Since(start), ErrTimeout, ErrAborted)
	if err := ms[0].AllReduce(context.Background(), bufs[0], Sum); !errors.Is(err, ErrBroken) {
		t.Fatalf("call after failure: %v, want ErrBroken", err)
	}
	CloseAll(ms)
	hub.SetFilter(nil)

	// Next epoch: rank 2 on a fresh endpoint, the others on the same ones.
	cfg.Timeout = time.Minute
	ts := []Transport{hts[0], hts[1], hub.Connect("m2b"), hts[3]}
	ms2, err := JoinAll(context.Background(), ts, "g", 2, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer CloseAll(ms2)
	bufs = clone2(in)
	for _, err := range AllReduceAll(context.Background(), ms2, bufs, Sum) {
		if err != nil {
			t.Fatal(err)
		}
	}
	for r := range bufs {
		sameBits(t, fmt.Sprintf("epoch 2 rank %d", r), bufs[r], oracle(in, Sum, encF32))
	}
}

// TestMemberNeverCalls: one member joins but never calls AllReduce.
func TestMemberNeverCalls(t *testing.T) {
	for _, algo := range []Algorithm{AlgoRSAG, AlgoDirect} {
		t.Run(string(algo), func(t *testing.T) {
			cfg := testConfig()
			cfg.Timeout = 500 * time.Millisecond
			cfg.Algorithm = algo
			_, ms := hubGroup(t, NewHub(0), "g", 1, 3, cfg)
			bufs := [][]float32{make([]float32, 5000), make([]float32, 5000), nil}
			start := time.Now()
			errs := AllReduceAll(context.Background(), ms[:2], bufs[:2], Sum)
			survivorsFail(t, errs, -1, cfg.Timeout+3*time.Second, time.Since(start), ErrTimeout, ErrAborted)
			var timedOut bool
			for _, err := range errs {
				timedOut = timedOut || errors.Is(err, ErrTimeout)
				if errors.Is(err, ErrTimeout) && !strings.Contains(err.Error(), "2") {
					t.Fatalf("timeout error does not name rank 2: %v", err)
				}
			}
			if !timedOut {
				t.Fatal("no member timed out")
			}
		})
	}
}

func TestPartitionThenNextEpoch(t *testing.T) {
	cfg := testConfig()
	cfg.Timeout = 500 * time.Millisecond
	hub := NewHub(0)
	hts, ms := hubGroup(t, hub, "g", 7, 3, cfg)
	hub.Partition("m1")
	bufs := [][]float32{make([]float32, 100), make([]float32, 100), make([]float32, 100)}
	start := time.Now()
	errs := AllReduceAll(context.Background(), ms, bufs, Sum)
	survivorsFail(t, errs, -1, cfg.Timeout+3*time.Second, time.Since(start), ErrTimeout, ErrAborted)
	CloseAll(ms)
	hub.Heal()
	cfg.Timeout = time.Minute
	ts := []Transport{hts[0], hts[1], hts[2]}
	ms2, err := JoinAll(context.Background(), ts, "g", 8, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer CloseAll(ms2)
	in := [][]float32{{1, 2}, {3, 4}, {5, 6}}
	bufs = clone2(in)
	for _, err := range AllReduceAll(context.Background(), ms2, bufs, Sum) {
		if err != nil {
			t.Fatal(err)
		}
	}
	sameBits(t, "epoch 8", bufs[1], []float32{9, 12})
	// Subscriptions of closed members are gone: 3 per live member.
	hub.mu.Lock()
	nsubs := len(hub.subs)
	hub.mu.Unlock()
	if nsubs != 9 {
		t.Fatalf("hub has %d subscriptions, want 9", nsubs)
	}
}

// TestStaleEpochRefused: members of an older epoch fail with ErrStaleEpoch
// while the current epoch's members, on the same hub and group, are not
// disturbed.
func TestStaleEpochRefused(t *testing.T) {
	cfg := testConfig()
	cfg.Timeout = 5 * time.Second
	hub := NewHub(0)
	_, old := hubGroup(t, hub, "g", 1, 2, cfg)
	_, cur := hubGroup(t, hub, "g", 2, 2, cfg)
	in := randomInputs(rand.New(rand.NewPCG(2, 2)), 2, 3000)
	bufsOld, bufsCur := clone2(in), clone2(in)
	done := make(chan []error, 2)
	go func() { done <- AllReduceAll(context.Background(), old, bufsOld, Sum) }()
	go func() { done <- AllReduceAll(context.Background(), cur, bufsCur, Sum) }()
	for range 2 {
		<-done
	}
	errsOld := AllReduceAll(context.Background(), old, bufsOld, Sum) // broken or stale by now
	for r, err := range errsOld {
		if !errors.Is(err, ErrStaleEpoch) {
			t.Fatalf("old rank %d: %v, want ErrStaleEpoch", r, err)
		}
	}
	want := oracle(in, Sum, encF32)
	for r := range bufsCur {
		sameBits(t, fmt.Sprintf("current rank %d", r), bufsCur[r], want)
	}
}

// TestRefusalMessage: a message of an older epoch to a current member is
// dropped and answered with a stale notice on the sender's inbox.
func TestRefusalMessage(t *testing.T) {
	cfg := testConfig()
	hub := NewHub(0)
	_, cur := hubGroup(t, hub, "g", 5, 2, cfg)
	spy := hub.Connect("spy")
	notices := make(chan *Msg, 4)
	sub, err := spy.Subscribe(inboxSubject("g", 4, 1), notices)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	old := frame{kind: kindRS, epoch: 4, seq: 1, from: 1, chunk: 0, count: 1, total: 1}
	if err := spy.Publish(inboxSubject("g", 4, 0), old.header(), []byte{0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, time.Millisecond, func() error {
		if len(cur[0].ch) == 0 {
			return errors.New("old message not delivered yet")
		}
		return nil
	})
	bufs := [][]float32{{1}, {2}}
	for _, err := range AllReduceAll(context.Background(), cur, bufs, Sum) {
		if err != nil {
			t.Fatal(err)
		}
	}
	sameBits(t, "current", bufs[0], []float32{3})
	select {
	case m := <-notices:
		f, err := parseFrame(m.Header)
		if err != nil || f.kind != kindStale || f.epoch != 5 {
			t.Fatalf("notice %+v (%v), want stale with epoch 5", f, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no stale notice")
	}
}

// TestAnnounceEpochAbortsCall: the coordinator's epoch announcement ends a
// stuck call at once with ErrStaleEpoch.
func TestAnnounceEpochAbortsCall(t *testing.T) {
	cfg := testConfig()
	cfg.Timeout = time.Minute
	hub := NewHub(0)
	_, ms := hubGroup(t, hub, "g", 3, 3, cfg)
	errs := make(chan error, 2)
	for r := range 2 { // rank 2 never calls: the call is stuck
		go func() { errs <- ms[r].AllReduce(context.Background(), make([]float32, 10), Sum) }()
	}
	time.Sleep(20 * time.Millisecond)
	if err := AnnounceEpoch(hub.Connect("coord"), "g", 4); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrStaleEpoch) {
				t.Fatalf("%v, want ErrStaleEpoch", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("announcement did not end the call")
		}
	}
	// Rank 2 learns at its next call, even though the others' data for it
	// is queued ahead of the announcement: control messages that arrived
	// before a call take precedence.
	checkFor(t, 5*time.Second, time.Millisecond, func() error {
		if n := len(ms[2].ch); n < 5 { // 2 data, 1 announcement, 2 aborts
			return fmt.Errorf("%d messages queued", n)
		}
		return nil
	})
	if err := ms[2].AllReduce(context.Background(), make([]float32, 10), Sum); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("rank 2: %v, want ErrStaleEpoch", err)
	}
}

func TestJoinErrors(t *testing.T) {
	t.Run("timeout names missing rank", func(t *testing.T) {
		cfg := testConfig()
		cfg.Timeout = 200 * time.Millisecond
		hub := NewHub(0)
		ms, err := JoinAll(context.Background(), []Transport{hub.Connect("a"), hub.Connect("b")}, "g", 1, cfg)
		if err != nil {
			t.Fatal(err)
		}
		CloseAll(ms)
		_, err = Join(context.Background(), hub.Connect("c"), "h", 1, 0, 3, cfg)
		if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "[1 2]") {
			t.Fatalf("%v, want ErrTimeout naming [1 2]", err)
		}
	})
	t.Run("config mismatch", func(t *testing.T) {
		cfg := testConfig()
		other := cfg
		other.Compression = CompressBF16
		hub := NewHub(0)
		errs := make(chan error, 2)
		go func() {
			m, err := Join(context.Background(), hub.Connect("a"), "g", 1, 0, 2, cfg)
			if m != nil {
				_ = m.Close()
			}
			errs <- err
		}()
		go func() {
			m, err := Join(context.Background(), hub.Connect("b"), "g", 1, 1, 2, other)
			if m != nil {
				_ = m.Close()
			}
			errs <- err
		}()
		for range 2 {
			if err := <-errs; !errors.Is(err, ErrMismatch) {
				t.Fatalf("%v, want ErrMismatch", err)
			}
		}
	})
	t.Run("duplicate rank", func(t *testing.T) {
		cfg := testConfig()
		hub := NewHub(0)
		errs := make(chan error, 2)
		for i := range 2 {
			go func() {
				m, err := Join(context.Background(), hub.Connect(fmt.Sprint(i)), "g", 1, 0, 2, cfg)
				if m != nil {
					_ = m.Close()
				}
				errs <- err
			}()
		}
		for range 2 {
			if err := <-errs; !errors.Is(err, ErrDuplicateRank) {
				t.Fatalf("%v, want ErrDuplicateRank", err)
			}
		}
	})
	t.Run("bad arguments", func(t *testing.T) {
		hub := NewHub(0)
		for _, tc := range []struct {
			group      string
			rank, size int
		}{{"a.b", 0, 1}, {"", 0, 1}, {"*", 0, 1}, {"ctl", 0, 1}, {"g", 1, 1}, {"g", -1, 2}, {"g", 0, 0}} {
			if _, err := Join(context.Background(), hub.Connect("x"), tc.group, 1, tc.rank, tc.size, DefaultConfig()); !errors.Is(err, ErrInvalid) {
				t.Errorf("Join(%q, rank %d, size %d) = %v, want ErrInvalid", tc.group, tc.rank, tc.size, err)
			}
		}
		if _, err := Join(context.Background(), NewHub(1000).Connect("x"), "g", 1, 0, 1, DefaultConfig()); !errors.Is(err, ErrInvalid) {
			t.Errorf("tiny max payload: %v, want ErrInvalid", err)
		}
	})
}

func TestMemberStates(t *testing.T) {
	cfg := testConfig()
	_, ms := hubGroup(t, NewHub(0), "g", 1, 2, cfg)
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		close(started)
		done <- ms[0].AllReduce(context.Background(), make([]float32, 10), Sum)
	}()
	<-started
	checkFor(t, 5*time.Second, time.Millisecond, func() error {
		if !ms[0].busy.Load() {
			return errors.New("not busy yet")
		}
		return nil
	})
	if err := ms[0].AllReduce(context.Background(), make([]float32, 10), Sum); !errors.Is(err, ErrBusy) {
		t.Fatalf("concurrent call: %v, want ErrBusy", err)
	}
	_ = ms[0].Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("call during Close: %v, want ErrClosed", err)
	}
	if err := ms[0].AllReduce(context.Background(), make([]float32, 10), Sum); !errors.Is(err, ErrClosed) {
		t.Fatalf("call after Close: %v, want ErrClosed", err)
	}
	if err := ms[1].AllReduce(context.Background(), make([]float32, 10), Op(9)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad op: %v, want ErrInvalid", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := ms[1].AllReduce(ctx, make([]float32, 10), Sum); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v, want context.Canceled", err)
	}
}

// TestAllReduceWindow: while one member has not started its call, the
// others' senders stop after the window's rounds instead of pushing their
// whole contribution at it (which made the server drop a member that fell
// behind as a slow consumer with 1 GiB buffers), and the call completes
// once it starts.
func TestAllReduceWindow(t *testing.T) {
	const n, window, perShard = 4, 2, 8
	cfg := testConfig()
	cfg.Algorithm = AlgoRSAG
	cfg.MaxInflight = 2 * (n - 1) * window * MinChunkBytes
	hub := NewHub(0)
	var toLate atomic.Int64 // reduce-scatter chunks sent to rank 1
	hub.SetFilter(func(from, to string, m *Msg) Action {
		if f, err := parseFrame(m.Header); err == nil && f.kind == kindRS && to == "m1" {
			toLate.Add(1)
		}
		return Deliver
	})
	_, ms := hubGroup(t, hub, "g", 1, n, cfg)
	if w := ms[0].Window(); w != window {
		t.Fatalf("window %d, want %d", w, window)
	}
	in := randomInputs(rand.New(rand.NewPCG(13, 14)), n, n*perShard*MinChunkBytes/4)
	bufs := clone2(in)
	errs := make(chan error, n)
	for r, m := range ms {
		if r != 1 {
			go func() { errs <- m.AllReduce(context.Background(), bufs[r], Sum) }()
		}
	}
	want := int64((n - 1) * window)
	checkFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if got := toLate.Load(); got < want {
			return fmt.Errorf("%d chunks sent to rank 1, want %d", got, want)
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond) // without the window all 24 go out at once
	if got := toLate.Load(); got != want {
		t.Fatalf("%d chunks sent to a member that has not started, want the window's %d", got, want)
	}
	go func() { errs <- ms[1].AllReduce(context.Background(), bufs[1], Sum) }()
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := toLate.Load(); got != (n-1)*perShard {
		t.Fatalf("%d chunks sent to rank 1 in all, want %d", got, (n-1)*perShard)
	}
	for r := range bufs {
		sameBits(t, fmt.Sprintf("rank %d", r), bufs[r], oracle(in, Sum, encF32))
	}
}

func TestChunkAndWindow(t *testing.T) {
	const mi = 1 << 20
	for _, tc := range []struct {
		name                    string
		chunkBytes, maxInflight int
		size, room              int
		wantChunk, wantWindow   int
	}{
		{"auto, 2 members: the 2 MiB ceiling", 0, 0, 2, 8 * mi, 2 * mi, 8},
		{"auto, 4 members", 0, 0, 4, 8 * mi, 2 * mi, 2},
		{"auto, 8 members: two rounds fit in 32 MiB", 0, 0, 8, 8 * mi, 1196032, 2},
		{"auto, 16 members", 0, 0, 16, 8 * mi, 557056, 2},
		{"auto, largest group: the floor", 0, 0, MaxGroupSize, 8 * mi, MinChunkBytes, 2},
		{"auto, nats-server's 1 MB max payload", 0, 0, 4, 1<<20 - HeaderRoom, 1<<20 - HeaderRoom, 5},
		{"auto, small budget", 0, 1 * mi, 4, 8 * mi, 86016, 2},
		{"explicit chunk: window from the budget", 1 * mi, 0, 4, 8 * mi, 1 * mi, 5},
		{"explicit chunk beyond the budget: window 2 anyway", 4 * mi, 0, 8, 8 * mi, 4 * mi, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			c.ChunkBytes = tc.chunkBytes
			if tc.maxInflight != 0 {
				c.MaxInflight = tc.maxInflight
			}
			chunk, window := c.withDefaults().chunkAndWindow(tc.size, tc.room)
			if chunk != tc.wantChunk || window != tc.wantWindow {
				t.Fatalf("chunk %d window %d, want %d and %d", chunk, window, tc.wantChunk, tc.wantWindow)
			}
			if chunk%8 != 0 {
				t.Fatalf("chunk %d is not a multiple of 8 bytes", chunk)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		fields []string
	}{
		{"default", func(*Config) {}, nil},
		{"zero", func(c *Config) { *c = Config{} }, nil},
		{"algorithm", func(c *Config) { c.Algorithm = "ring" }, []string{"Algorithm"}},
		{"compression", func(c *Config) { c.Compression = "int8" }, []string{"Compression"}},
		{"several", func(c *Config) {
			c.Timeout = -1
			c.ChunkBytes = 10
			c.SmallThreshold = -1
			c.QueueLen = -2
			c.MaxInflight = -3
		}, []string{"Timeout", "ChunkBytes", "SmallThreshold", "QueueLen", "MaxInflight"}},
		{"chunk too large", func(c *Config) { c.ChunkBytes = MaxChunkBytes + 1 }, []string{"ChunkBytes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mutate(&c)
			err := c.Validate()
			if len(tc.fields) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("%v, want ErrInvalid", err)
			}
			for _, f := range tc.fields {
				if !strings.Contains(err.Error(), f+":") {
					t.Errorf("error %q does not name %s", err, f)
				}
			}
		})
	}
}

func TestFrameRoundTrip(t *testing.T) {
	for _, f := range []frame{
		{kind: kindRS, epoch: 1, seq: 2, from: 3, chunk: 4, count: 5, total: 6, enc: encBF16},
		{kind: kindEpoch, epoch: math.MaxUint64, seq: math.MaxUint64, from: 4095, chunk: 1 << 30, count: 1 << 30, total: 1 << 40, enc: encF16},
		{kind: kindHello},
	} {
		h := f.header()
		if n := headerSize(h); n%8 != 0 {
			t.Errorf("header of %+v is %d bytes, not a multiple of 8", f, n)
		}
		g, err := parseFrame(h)
		if err != nil || g != f {
			t.Errorf("round trip %+v -> %+v, %v", f, g, err)
		}
	}
	for _, v := range []string{"", "1", "2 3 1 1 1 1 1 1 0 -", "1 3 x 1 1 1 1 1 0 -", "1 3 1 1 1 1 1 1 9 -", "1 3 1 1 1 1 1 1"} {
		if _, err := parseFrame(Header{headerKey: {v}}); err == nil {
			t.Errorf("parseFrame(%q) succeeded", v)
		}
	}
}

func FuzzParseFrame(f *testing.F) {
	f.Add("1 3 1 2 3 4 5 6 1 ---")
	f.Add("1 8 18446744073709551615 0 0 0 0 0 0 -")
	f.Fuzz(func(t *testing.T, v string) {
		fr, err := parseFrame(Header{headerKey: {v}})
		if err != nil {
			return
		}
		if fr.from < 0 || fr.chunk < 0 || fr.count < 0 || fr.total < 0 || fr.enc > encF16 {
			t.Fatalf("parsed out-of-range frame %+v from %q", fr, v)
		}
	})
}

// TestBusBW: nccl-tests' bus bandwidth, algbw × 2(n−1)/n.
func TestBusBW(t *testing.T) {
	for _, c := range []struct {
		algbw float64
		n     int
		want  float64
	}{{100, 1, 0}, {100, 2, 100}, {100, 4, 150}, {80, 8, 140}} {
		if got := BusBW(c.algbw, c.n); got != c.want {
			t.Errorf("BusBW(%v, %d) = %v, want %v", c.algbw, c.n, got, c.want)
		}
	}
}
