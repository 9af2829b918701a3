package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain doubles as a stand-in for the herd CLI until `herd bench
// allreduce` exists, so that member processes and scripts/bench-allreduce.sh
// can use the test binary (go test -c -o /tmp/herd-bench ./collective/bench):
//
//	bench.test bench allreduce --workers 4 --size 16777216 [...]
//	bench.test bench allreduce-member   (member process: spec on stdin)
func TestMain(m *testing.M) {
	if len(os.Args) >= 3 && os.Args[1] == "bench" {
		os.Exit(fakeCLI(os.Args[2], os.Args[3:]))
	}
	goleak.VerifyTestMain(m)
}

func fakeCLI(cmd string, args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	switch cmd {
	case "allreduce-member":
		if dir := os.Getenv("HERD_BENCH_CPUPROFILE"); dir != "" {
			f, err := os.CreateTemp(dir, "member-*.prof")
			if err == nil && pprof.StartCPUProfile(f) == nil {
				defer pprof.StopCPUProfile()
			}
		}
		err := Member(ctx, os.Stdin, os.Stdout)
		printRusage("member")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	case "allreduce":
		fs := flag.NewFlagSet("allreduce", flag.ContinueOnError)
		var o Options
		fs.IntVar(&o.Workers, "workers", 4, "members")
		fs.Int64Var(&o.SizeBytes, "size", 16<<20, "buffer bytes")
		fs.StringVar(&o.NATSURL, "nats", "", "NATS URL (default: embedded server)")
		maxPayload := fs.Int("max-payload", 0, "embedded server max_payload bytes")
		fs.StringVar(&o.Algorithm, "algorithm", "auto", "auto|rsag|direct")
		fs.StringVar(&o.Compression, "compression", "none", "none|bf16|fp16")
		fs.StringVar(&o.Transport, "transport", "", "raw|nats (default: raw unless TLS/nkeys/creds)")
		fs.IntVar(&o.ChunkBytes, "chunk-bytes", 0, "bytes per message")
		fs.IntVar(&o.Iters, "iters", 20, "timed calls")
		fs.IntVar(&o.Warmup, "warmup", 3, "untimed calls")
		fs.DurationVar(&o.Timeout, "timeout", 60*time.Second, "per-call timeout")
		inProcess := fs.Bool("in-process", false, "members as goroutines")
		fs.IntVar(&o.KillRank, "kill-rank", -1, "SIGKILL this rank...")
		fs.IntVar(&o.KillAfter, "kill-after", 0, "...when it starts this timed call")
		if err := fs.Parse(args); err != nil {
			return 2
		}
		o.MaxPayload = int32(*maxPayload)
		if env := os.Getenv("HERD_BENCH_MEMBER_ENV"); env != "" {
			o.Env = strings.Fields(env) // e.g. "GOMAXPROCS=1 GOGC=400"
		}
		if !*inProcess {
			exe, err := os.Executable()
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			o.Exec = []string{exe, "bench", "allreduce-member"}
			if n := os.Getenv("HERD_BENCH_MEMBER_NICE"); n != "" {
				o.Exec = append([]string{"nice", "-n", n}, o.Exec...)
			}
		}
		if dir := os.Getenv("HERD_BENCH_CPUPROFILE"); dir != "" {
			f, err := os.CreateTemp(dir, "parent-*.prof")
			if err == nil && pprof.StartCPUProfile(f) == nil {
				defer pprof.StopCPUProfile()
			}
		}
		res, err := Run(ctx, o)
		printRusage("parent")
		if res != nil {
			b, _ := json.Marshal(res)
			fmt.Println(string(b))
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown command %q\n", cmd)
	return 2
}

// printRusage reports this process's CPU time on stderr when
// HERD_BENCH_RUSAGE is set (to see where CPU goes: server vs members).
func printRusage(who string) {
	if os.Getenv("HERD_BENCH_RUSAGE") == "" {
		return
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		fmt.Fprintf(os.Stderr, "%s: user %.2fs sys %.2fs\n", who,
			time.Duration(ru.Utime.Nano()).Seconds(), time.Duration(ru.Stime.Nano()).Seconds())
	}
}

func memberExec(t *testing.T) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return []string{exe, "bench", "allreduce-member"}
}

func checkResult(t *testing.T, res *Result, o Options) {
	t.Helper()
	if len(res.Ranks) != o.Workers {
		t.Fatalf("%d rank results, want %d", len(res.Ranks), o.Workers)
	}
	for _, r := range res.Ranks {
		if r.Error != "" || r.TimeUS <= 0 {
			t.Fatalf("rank %+v", r)
		}
	}
	if res.TimeUS <= 0 || res.AlgBW <= 0 {
		t.Fatalf("result %+v", res)
	}
	want := res.AlgBW * 2 * float64(o.Workers-1) / float64(o.Workers)
	if d := res.BusBW - want; d > 1e-9 || d < -1e-9 {
		t.Fatalf("busbw %v, want %v", res.BusBW, want)
	}
	if got := float64(o.SizeBytes) / res.TimeUS; got != res.AlgBW {
		t.Fatalf("algbw %v, want %v", res.AlgBW, got)
	}
}

func TestRunInProcess(t *testing.T) {
	for _, tc := range []Options{
		{Workers: 3, SizeBytes: 1 << 20, Iters: 3, Compression: "bf16"},
		{Workers: 4, SizeBytes: 4 * 1001, Iters: 3, Algorithm: "rsag", MaxPayload: 64 << 10},
	} {
		t.Run(fmt.Sprintf("n=%d/bytes=%d", tc.Workers, tc.SizeBytes), func(t *testing.T) {
			res, err := Run(context.Background(), tc)
			if err != nil {
				t.Fatal(err)
			}
			if tc.SizeBytes == 0 {
				return
			}
			checkResult(t, res, tc)
			if res.Mode != "inprocess" || res.Compression != tc.Compression && tc.Compression != "" {
				t.Fatalf("result %+v", res)
			}
		})
	}
}

func TestRunProcesses(t *testing.T) {
	o := Options{Workers: 3, SizeBytes: 1 << 20, Iters: 3, Exec: memberExec(t), Algorithm: "rsag"}
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, res, o)
	if res.Mode != "process" || res.Algorithm != "rsag" || res.MaxPayload != 8<<20 {
		t.Fatalf("result %+v", res)
	}
}

// TestKillMember: a member killed mid-call (SIGKILL for processes, its
// connection closed in-process) makes every survivor fail within the
// timeout.
func TestKillMember(t *testing.T) {
	for _, mode := range []string{"process", "inprocess"} {
		t.Run(mode, func(t *testing.T) {
			o := Options{Workers: 4, SizeBytes: 8 << 20, Iters: 50, Timeout: 2 * time.Second, KillRank: 2, KillAfter: 2}
			if mode == "process" {
				o.Exec = memberExec(t)
			}
			start := time.Now()
			res, err := Run(context.Background(), o)
			if !errors.Is(err, ErrMembersFailed) {
				t.Fatalf("Run: %v, want ErrMembersFailed", err)
			}
			if !res.Ranks[2].Killed {
				t.Fatalf("rank 2 not killed: %+v", res.Ranks[2])
			}
			for r, rr := range res.Ranks {
				if r == 2 {
					continue
				}
				if rr.Error == "" {
					t.Fatalf("rank %d survived a dead member: %+v", r, rr)
				}
				if !strings.Contains(rr.Error, "timeout") && !strings.Contains(rr.Error, "aborted") {
					t.Fatalf("rank %d: %s", r, rr.Error)
				}
				if limit := float64(o.Timeout.Milliseconds()) + 3000; rr.FailedAfterMS > limit {
					t.Fatalf("rank %d failed after %v ms, bound %v ms", r, rr.FailedAfterMS, limit)
				}
			}
			if time.Since(start) > time.Minute {
				t.Fatalf("Run took %v", time.Since(start))
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{
		{Workers: -1},
		{SizeBytes: 7},
		{Algorithm: "ring"},
		{KillRank: 5, KillAfter: 1, Workers: 2},
		{Exec: []string{}},
	} {
		if _, err := Run(context.Background(), o); err == nil {
			t.Errorf("Run(%+v) succeeded", o)
		}
	}
}
