// Package bench measures collective.AllReduce the way nccl-tests does:
// N members all-reduce a float32 buffer of a given size over NATS, each
// timed over many calls, and the result reports time per call, algorithm
// bandwidth (bytes / time) and bus bandwidth (algbw × 2(N−1)/N). Members run
// as separate processes (the CLI re-executes its own binary, see
// Options.Exec and Member) or as goroutines with one connection each (tests).
// `herd bench allreduce` is a thin wrapper around Run.
package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/herdml/herd/collective"
	"github.com/herdml/herd/internal/natsutil"
)

// Options configures Run. Zero values mean the documented defaults.
type Options struct {
	// Workers is the number of members, 1..collective.MaxGroupSize.
	// Default 4.
	Workers int
	// SizeBytes is the buffer size in bytes (float32, so a multiple of
	// 4). Default 16 MiB.
	SizeBytes int64
	// NATSURL is the server to use; empty starts an embedded server in
	// this process (natsutil.StartEmbedded) with MaxPayload.
	NATSURL string
	// MaxPayload of the embedded server. Default 8 MiB.
	MaxPayload int32
	// Connect holds auth/TLS settings for NATSURL.
	Connect natsutil.ConnectOptions
	// Algorithm (auto|rsag|direct) and Compression (none|bf16|fp16) of
	// the collective. Defaults auto and none.
	Algorithm   string
	Compression string
	// ChunkBytes and SmallThreshold pass through to collective.Config (0:
	// defaults).
	ChunkBytes     int
	SmallThreshold int
	// Iters timed calls (default 20) after Warmup untimed ones (default
	// 3; one call always checks the result against a local oracle).
	Iters, Warmup int
	// Timeout is collective.Config.Timeout. Default 60s.
	Timeout time.Duration
	// Transport is the members' NATS client: "raw" (collective's own
	// minimal client, RawNATSTransport: plain TCP, user/password or token),
	// "nats" (nats.go, NATSTransport: also TLS, nkeys, creds) or "" (auto:
	// raw unless Connect asks for TLS, nkeys or creds).
	Transport string
	// Echo keeps NATS echo on for the members' connections (by default
	// they are opened with NoEcho, one connection per member).
	Echo bool
	// Exec is the argv prefix that starts one member process, which must
	// call Member with its stdin and stdout, e.g.
	// [os.Executable(), "bench", "allreduce-member"]. Nil runs members in
	// this process as goroutines.
	Exec []string
	// Env is added to the environment of member processes.
	Env []string
	// Stderr receives the member processes' stderr. Default os.Stderr.
	Stderr io.Writer
	// KillRank, when ≥ 0 with KillAfter ≥ 1, injects a fault: rank
	// KillRank is killed (SIGKILL for processes; its connection closed
	// in-process) right after it starts timed call number KillAfter.
	// The others must then fail within Timeout; Run reports how long
	// they took. Default -1 (off) — set it explicitly; the zero value 0
	// means rank 0 only when KillAfter ≥ 1.
	KillRank  int
	KillAfter int
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
}

// Result is what Run measured. JSON field names are stable (scripts parse
// them).
type Result struct {
	Impl        string `json:"impl"` // "herd"
	Mode        string `json:"mode"` // "process" or "inprocess"
	Workers     int    `json:"workers"`
	SizeBytes   int64  `json:"size_bytes"`
	Algorithm   string `json:"algorithm"` // effective for this size
	Compression string `json:"compression"`
	Transport   string `json:"transport"` // raw or nats
	ChunkBytes  int    `json:"chunk_bytes"`
	MaxPayload  int    `json:"max_payload"`
	Iters       int    `json:"iters"`
	// TimeUS is the slowest rank's mean time per timed call.
	TimeUS float64 `json:"time_us"`
	// AlgBW = SizeBytes / time, BusBW = AlgBW × 2(N−1)/N, in MB/s (1e6).
	AlgBW float64      `json:"algbw_mb_s"`
	BusBW float64      `json:"busbw_mb_s"`
	Ranks []RankResult `json:"ranks"`
}

// RankResult is one member's outcome.
type RankResult struct {
	Rank   int     `json:"rank"`
	TimeUS float64 `json:"time_us,omitempty"`
	Error  string  `json:"error,omitempty"`
	// FailedAfterMS is, for a failed member, how long its failing call
	// ran before returning.
	FailedAfterMS float64 `json:"failed_after_ms,omitempty"`
	Killed        bool    `json:"killed,omitempty"`
	// Algorithm, ChunkBytes and flow-control Window the member used.
	Algorithm  string `json:"algorithm,omitempty"`
	ChunkBytes int    `json:"chunk_bytes,omitempty"`
	Window     int    `json:"window,omitempty"`
}

// ErrMembersFailed is returned (wrapped) by Run when a member failed; the
// Result then holds each rank's error.
var ErrMembersFailed = errors.New("bench: members failed")

func (o *Options) defaults() error {
	if o.Workers == 0 {
		o.Workers = 4
	}
	if o.SizeBytes == 0 {
		o.SizeBytes = 16 << 20
	}
	if o.Iters == 0 {
		o.Iters = 20
	}
	if o.Warmup == 0 {
		o.Warmup = 3
	}
	if o.Timeout == 0 {
		o.Timeout = 60 * time.Second
	}
	if o.Algorithm == "" {
		o.Algorithm = string(collective.AlgoAuto)
	}
	if o.Compression == "" {
		o.Compression = string(collective.CompressNone)
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	var errs []error
	if o.Workers < 1 || o.Workers > collective.MaxGroupSize {
		errs = append(errs, fmt.Errorf("bench: Workers: %d out of range 1..%d", o.Workers, collective.MaxGroupSize))
	}
	if o.SizeBytes < 0 || o.SizeBytes%4 != 0 {
		errs = append(errs, fmt.Errorf("bench: SizeBytes: %d is not a non-negative multiple of 4", o.SizeBytes))
	}
	if o.Iters < 1 || o.Warmup < 0 {
		errs = append(errs, fmt.Errorf("bench: Iters/Warmup: %d/%d, need ≥1/≥0", o.Iters, o.Warmup))
	}
	if o.KillAfter > 0 && (o.KillRank < 0 || o.KillRank >= o.Workers) {
		errs = append(errs, fmt.Errorf("bench: KillRank: %d out of range 0..%d", o.KillRank, o.Workers-1))
	}
	switch o.Transport {
	case "", "raw", "nats":
	default:
		errs = append(errs, fmt.Errorf("bench: Transport: %q is not raw, nats or empty", o.Transport))
	}
	if len(o.Exec) == 0 && o.Exec != nil {
		errs = append(errs, errors.New("bench: Exec: empty argv"))
	}
	if err := o.config().Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (o *Options) config() collective.Config {
	cfg := collective.DefaultConfig()
	cfg.Algorithm = collective.Algorithm(o.Algorithm)
	cfg.Compression = collective.Compression(o.Compression)
	cfg.Timeout = o.Timeout
	if o.ChunkBytes != 0 {
		cfg.ChunkBytes = o.ChunkBytes
	}
	if o.SmallThreshold != 0 {
		cfg.SmallThreshold = o.SmallThreshold
	}
	return cfg
}

// spec is what a member needs; the parent sends it to member processes as
// one JSON line on stdin.
type spec struct {
	URL            string                  `json:"url"`
	Connect        natsutil.ConnectOptions `json:"connect"`
	Group          string                  `json:"group"`
	Rank           int                     `json:"rank"`
	Workers        int                     `json:"workers"`
	Elems          int                     `json:"elems"`
	Iters          int                     `json:"iters"`
	Warmup         int                     `json:"warmup"`
	Algorithm      string                  `json:"algorithm"`
	Compression    string                  `json:"compression"`
	ChunkBytes     int                     `json:"chunk_bytes"`
	SmallThreshold int                     `json:"small_threshold"`
	Timeout        time.Duration           `json:"timeout"`
	NoEcho         bool                    `json:"no_echo"`
	Transport      string                  `json:"transport"`
}

// event is one line a member reports: "joined", "iter" (a timed call
// starts) or "done" (with the result).
type event struct {
	Event  string      `json:"event"`
	Iter   int         `json:"iter,omitempty"`
	Result *RankResult `json:"result,omitempty"`
}

// Run starts the server (unless NATSURL is set) and Workers members, and
// returns the measurements. When a member fails the Result is still
// returned, with the per-rank errors, together with an error wrapping
// ErrMembersFailed.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	url := o.NATSURL
	if url == "" {
		s, u, err := natsutil.StartEmbedded(natsutil.EmbeddedOptions{MaxPayload: o.MaxPayload})
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		// As `herd coord start` does for its embedded server; restored
		// when Run returns.
		defer natsutil.TuneRelayGC()()
		defer func() {
			s.Shutdown()
			s.WaitForShutdown()
		}()
		url = u
	}
	var gid [6]byte
	_, _ = rand.Read(gid[:])
	base := spec{
		URL:            url,
		Connect:        o.Connect,
		Group:          "bench-" + hex.EncodeToString(gid[:]),
		Workers:        o.Workers,
		Elems:          int(o.SizeBytes / 4),
		Iters:          o.Iters,
		Warmup:         o.Warmup,
		Algorithm:      o.Algorithm,
		Compression:    o.Compression,
		ChunkBytes:     o.ChunkBytes,
		SmallThreshold: o.SmallThreshold,
		Timeout:        o.Timeout,
		NoEcho:         !o.Echo,
		Transport:      transportFor(o),
	}
	res := &Result{
		Impl:        "herd",
		Workers:     o.Workers,
		SizeBytes:   o.SizeBytes,
		Compression: o.Compression,
		Transport:   base.Transport,
		Iters:       o.Iters,
		Ranks:       make([]RankResult, o.Workers),
	}
	o.Logger.Info("bench allreduce", "workers", o.Workers, "bytes", o.SizeBytes, "url", url, "processes", o.Exec != nil)
	var err error
	if o.Exec != nil {
		res.Mode = "process"
		err = runProcesses(ctx, o, base, res.Ranks)
	} else {
		res.Mode = "inprocess"
		err = runInProcess(ctx, o, base, res.Ranks)
	}
	if err != nil {
		return nil, err
	}
	var failed []error
	for _, r := range res.Ranks {
		if r.Error != "" {
			failed = append(failed, fmt.Errorf("rank %d: %s", r.Rank, r.Error))
			continue
		}
		res.TimeUS = math.Max(res.TimeUS, r.TimeUS)
		res.Algorithm, res.ChunkBytes = r.Algorithm, r.ChunkBytes
	}
	if nc, cerr := natsutil.Connect(url, o.Connect); cerr == nil {
		res.MaxPayload = int(nc.MaxPayload())
		nc.Close()
	}
	if len(failed) > 0 {
		return res, fmt.Errorf("%w: %w", ErrMembersFailed, errors.Join(failed...))
	}
	if res.TimeUS > 0 {
		res.AlgBW = float64(o.SizeBytes) / res.TimeUS // bytes/µs = MB/s
		res.BusBW = collective.BusBW(res.AlgBW, o.Workers)
	}
	return res, nil
}

// transportFor resolves Options.Transport.
func transportFor(o Options) string {
	if o.Transport != "" {
		return o.Transport
	}
	c := o.Connect
	if c.NkeySeedFile != "" || c.CredsFile != "" || c.TLSCA != "" || c.TLSCert != "" || c.TLSKey != "" || c.TLSInsecureSkipVerify {
		return "nats"
	}
	return "raw"
}

func runInProcess(ctx context.Context, o Options, base spec, out []RankResult) error {
	var wg sync.WaitGroup
	for r := range out {
		s := base
		s.Rank = r
		wg.Go(func() {
			var onIter func(int, func())
			if o.KillAfter > 0 && r == o.KillRank {
				onIter = func(k int, closeConn func()) {
					if k == o.KillAfter {
						go func() {
							time.Sleep(time.Millisecond)
							closeConn()
						}()
					}
				}
			}
			out[r] = runMember(ctx, s, func(event) {}, onIter)
			if onIter != nil {
				out[r].Killed = true
			}
		})
	}
	wg.Wait()
	return nil
}

func runProcesses(ctx context.Context, o Options, base spec, out []RankResult) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type proc struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		out   *bufio.Scanner
	}
	procs := make([]*proc, len(out))
	defer func() {
		for _, p := range procs {
			if p != nil {
				_ = p.stdin.Close()
				_ = p.cmd.Process.Kill()
				_ = p.cmd.Wait()
			}
		}
	}()
	for r := range out {
		cmd := exec.CommandContext(ctx, o.Exec[0], o.Exec[1:]...)
		cmd.Env = append(os.Environ(), o.Env...)
		cmd.Stderr = o.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return fmt.Errorf("bench: rank %d stdin: %w", r, err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return fmt.Errorf("bench: rank %d stdout: %w", r, err)
		}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("bench: start rank %d (%v): %w", r, o.Exec, err)
		}
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		procs[r] = &proc{cmd: cmd, stdin: stdin, out: sc}
		s := base
		s.Rank = r
		line, _ := json.Marshal(s)
		if _, err := stdin.Write(append(line, '\n')); err != nil {
			return fmt.Errorf("bench: rank %d spec: %w", r, err)
		}
	}
	var wg sync.WaitGroup
	for r, p := range procs {
		wg.Go(func() {
			out[r] = RankResult{Rank: r, Error: "member exited without a result"}
			for p.out.Scan() {
				var ev event
				if err := json.Unmarshal(p.out.Bytes(), &ev); err != nil {
					continue
				}
				switch ev.Event {
				case "iter":
					if o.KillAfter > 0 && r == o.KillRank && ev.Iter == o.KillAfter {
						time.Sleep(time.Millisecond)
						_ = p.cmd.Process.Signal(syscall.SIGKILL)
						out[r] = RankResult{Rank: r, Error: "killed", Killed: true}
					}
				case "done":
					if ev.Result != nil && !out[r].Killed {
						out[r] = *ev.Result
					}
				}
			}
			werr := p.cmd.Wait()
			if out[r].Error == "member exited without a result" && werr != nil {
				out[r].Error += ": " + werr.Error()
			}
		})
	}
	wg.Wait()
	for i, p := range procs {
		_ = p.stdin.Close()
		procs[i] = nil // waited above
	}
	return nil
}

// Member runs one member process: it reads its spec (one JSON line) from
// in, writes events (JSON lines) to out, and returns when done. It stops
// when in reaches EOF (the parent went away) or ctx ends. The CLI's hidden
// `herd bench allreduce-member` calls it with os.Stdin and os.Stdout.
func Member(ctx context.Context, in io.Reader, out io.Writer) error {
	br := bufio.NewReader(in)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("bench: member spec: %w", err)
	}
	var s spec
	if err := json.Unmarshal(line, &s); err != nil {
		return fmt.Errorf("bench: member spec: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, br) // EOF: the parent is gone or done
		cancel()
	}()
	enc := json.NewEncoder(out)
	var mu sync.Mutex
	emit := func(ev event) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(ev)
	}
	r := runMember(ctx, s, emit, nil)
	emit(event{Event: "done", Result: &r})
	if r.Error != "" {
		return fmt.Errorf("bench: rank %d: %s", r.Rank, r.Error)
	}
	return nil
}

// runMember connects, joins, checks one result against the oracle, warms
// up and times s.Iters calls. onIter (in-process fault injection) runs as
// timed call k starts.
func runMember(ctx context.Context, s spec, emit func(event), onIter func(k int, closeConn func())) RankResult {
	res := RankResult{Rank: s.Rank}
	fail := func(err error) RankResult {
		res.Error = err.Error()
		return res
	}
	co := s.Connect
	co.Name = fmt.Sprintf("%s-rank%d", s.Group, s.Rank)
	co.NoEcho = s.NoEcho
	t, closeConn, err := dial(s, co)
	if err != nil {
		return fail(err)
	}
	defer closeConn()
	cfg := collective.DefaultConfig()
	cfg.Algorithm = collective.Algorithm(s.Algorithm)
	cfg.Compression = collective.Compression(s.Compression)
	cfg.Timeout = s.Timeout
	if s.ChunkBytes != 0 {
		cfg.ChunkBytes = s.ChunkBytes
	}
	if s.SmallThreshold != 0 {
		cfg.SmallThreshold = s.SmallThreshold
	}
	m, err := collective.Join(ctx, t, s.Group, 1, s.Rank, s.Workers, cfg)
	if err != nil {
		return fail(err)
	}
	defer m.Close()
	res.Algorithm, res.ChunkBytes, res.Window = string(m.Algorithm(s.Elems)), m.ChunkBytes(), m.Window()
	emit(event{Event: "joined"})

	call := func(buf []float32, op collective.Op) error {
		start := time.Now()
		err := m.AllReduce(ctx, buf, op)
		if err != nil {
			res.FailedAfterMS = float64(time.Since(start).Microseconds()) / 1000
		}
		return err
	}
	// One checked call: x_r[i] = (i%127) + r, against the oracle.
	buf := make([]float32, s.Elems)
	for i := range buf {
		buf[i] = float32(i%127 + s.Rank)
	}
	if err := call(buf, collective.Sum); err != nil {
		return fail(err)
	}
	if err := check(buf, s); err != nil {
		return fail(err)
	}
	// Mean of equal inputs stays exactly the same: stable values.
	for i := range buf {
		buf[i] = float32(i % 127)
	}
	for range s.Warmup {
		if err := call(buf, collective.Mean); err != nil {
			return fail(err)
		}
	}
	if err := call(make([]float32, 1), collective.Sum); err != nil { // barrier
		return fail(err)
	}
	start := time.Now()
	for k := 1; k <= s.Iters; k++ {
		emit(event{Event: "iter", Iter: k})
		if onIter != nil {
			onIter(k, closeConn)
		}
		if err := call(buf, collective.Mean); err != nil {
			return fail(err)
		}
	}
	res.TimeUS = float64(time.Since(start).Nanoseconds()) / 1e3 / float64(s.Iters)
	for i := range buf {
		if buf[i] != float32(i%127) {
			return fail(fmt.Errorf("element %d drifted to %v", i, buf[i]))
		}
	}
	return res
}

// dial opens the member's connection with the transport s asks for.
func dial(s spec, co natsutil.ConnectOptions) (collective.Transport, func(), error) {
	if s.Transport == "nats" {
		nc, err := natsutil.Connect(s.URL, co)
		if err != nil {
			return nil, nil, err
		}
		return collective.NewNATSTransport(nc), nc.Close, nil
	}
	t, err := collective.DialRawNATS(s.URL, collective.RawNATSOptions{
		Name: co.Name, User: co.User, Password: co.Password, Token: co.Token,
		NoEcho: co.NoEcho, DialTimeout: co.Timeout, WriteTimeout: co.WriteTimeout,
	})
	if err != nil {
		return nil, nil, err
	}
	return t, func() { _ = t.Close() }, nil
}

// check compares the checked call's result with q(Σ_r q(x_r)).
func check(buf []float32, s spec) error {
	q := func(x float32) float32 {
		switch collective.Compression(s.Compression) {
		case collective.CompressBF16:
			return collective.BF16ToF32(collective.F32ToBF16(x))
		case collective.CompressFP16:
			return collective.F16ToF32(collective.F32ToF16(x))
		default:
			return x
		}
	}
	for i, got := range buf {
		sum := q(float32(i % 127))
		for r := 1; r < s.Workers; r++ {
			sum += q(float32(i%127 + r))
		}
		if want := q(sum); got != want {
			return fmt.Errorf("wrong result: element %d = %v, want %v", i, got, want)
		}
	}
	return nil
}
