package engine

import (
	"bufio"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/herdml/herd/internal/torch"
)

// BenchResult is what `herd bench train` prints.
type BenchResult struct {
	Steps        int     `json:"steps"`
	MicroBatch   int     `json:"micro_batch_size"`
	SeqLen       int     `json:"seq_len"`
	Threads      int     `json:"threads"`
	Device       string  `json:"device"`
	StepMs       float64 `json:"step_ms_median"`
	StepMsMean   float64 `json:"step_ms_mean"`
	TokensPerSec float64 `json:"tokens_per_sec"`
	// Memory: resident set after the warm-up steps and at the end, and
	// the peak; growth is end over warm-up, the flatness check.
	RSSWarmBytes int64   `json:"rss_after_warmup_bytes"`
	RSSEndBytes  int64   `json:"rss_end_bytes"`
	RSSPeakBytes int64   `json:"rss_peak_bytes"`
	RSSGrowth    float64 `json:"rss_growth"`
}

// Bench times full training steps (forward, backward, flat gradients,
// AdamW) on random token batches of micro × seq, after warmup untimed
// steps.
func (e *Engine) Bench(micro, seq, warmup, steps int) (*BenchResult, error) {
	rng := rand.New(rand.NewPCG(1, 2))
	vocab := e.Model.Config.VocabSize
	b := Batch{B: micro, S: seq, IDs: make([]int64, micro*seq), Labels: make([]int64, micro*seq)}
	var times []float64
	res := &BenchResult{Steps: steps, MicroBatch: micro, SeqLen: seq, Device: e.Model.Device.String()}
	e.th.Do(func() { res.Threads, _ = torch.NumThreads() })
	for i := 0; i < warmup+steps; i++ {
		for j := range b.IDs {
			b.IDs[j] = int64(rng.IntN(vocab))
			b.Labels[j] = b.IDs[j]
		}
		start := time.Now()
		r, err := e.MicroBatch(b)
		if err != nil {
			return nil, err
		}
		g, err := e.Gradients()
		if err != nil {
			return nil, err
		}
		if _, err := e.Apply(g, r.Tokens); err != nil {
			return nil, err
		}
		if i >= warmup {
			times = append(times, float64(time.Since(start).Microseconds())/1000)
		}
		if i == warmup-1 || (warmup == 0 && i == 0) {
			res.RSSWarmBytes = procStatus("VmRSS")
		}
	}
	res.RSSEndBytes, res.RSSPeakBytes = procStatus("VmRSS"), procStatus("VmHWM")
	if res.RSSWarmBytes > 0 {
		res.RSSGrowth = float64(res.RSSEndBytes-res.RSSWarmBytes) / float64(res.RSSWarmBytes)
	}
	sum := 0.0
	for _, t := range times {
		sum += t
	}
	res.StepMsMean = sum / float64(len(times))
	slices.Sort(times)
	res.StepMs = times[len(times)/2]
	res.TokensPerSec = float64(micro*seq) / (res.StepMs / 1000)
	return res, nil
}

// procStatus reads a kB field of /proc/self/status in bytes (0 if absent).
func procStatus(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != field {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0
		}
		return n * 1024
	}
	return 0
}
