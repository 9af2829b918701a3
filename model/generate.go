package model

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"

	"github.com/herdml/herd/internal/torch"
)

// GenConfig controls generation.
type GenConfig struct {
	MaxNewTokens int     // > 0
	Temperature  float64 // 0 = greedy
	TopK         int     // 0 = off
	TopP         float64 // (0, 1]; 1 = off
	// Seeds seed each row's sampler, so that a row's output does not depend
	// on which other rows share its batch. Missing entries use 0.
	Seeds []uint64
	// EOS ids end a row.
	EOS []int64
	// PadID fills the left padding of shorter prompts.
	PadID int64
	// Stop, when set, is asked after each new token whether row should end
	// (stop strings: the caller decodes).
	Stop func(row int, generated []int64) bool
}

// Generate continues each prompt with a KV cache: prompts are left-padded
// into one batch, prefilled in one pass, then extended one token per pass.
// It returns the generated ids of each row (without the prompt), ending at
// the first EOS (included) or stop.
func (m *Model) Generate(prompts [][]int64, cfg GenConfig, ad Adapter) ([][]int64, error) {
	if cfg.MaxNewTokens <= 0 {
		return nil, errors.New("model: max_new_tokens must be > 0")
	}
	if len(prompts) == 0 {
		return nil, nil
	}
	B := len(prompts)
	T := 0
	for i, p := range prompts {
		if len(p) == 0 {
			return nil, fmt.Errorf("model: prompt %d is empty", i)
		}
		T = max(T, len(p))
	}
	ids := make([]int64, B*T)
	valid := make([]bool, B*T)
	for r, p := range prompts {
		off := T - len(p)
		for t := 0; t < T; t++ {
			if t < off {
				ids[r*T+t] = cfg.PadID
			} else {
				ids[r*T+t], valid[r*T+t] = p[t-off], true
			}
		}
	}
	samplers := make([]*rand.Rand, B)
	for r := range samplers {
		var seed uint64
		if r < len(cfg.Seeds) {
			seed = cfg.Seeds[r]
		}
		samplers[r] = rand.New(rand.NewPCG(seed, 0x67656e))
	}
	cache := &KVCache{}
	defer cache.Free()
	out := make([][]int64, B)
	done := make([]bool, B)
	step := func(tokens []int64, valid []bool, n int) ([][]float32, error) {
		s := torch.NewScope()
		defer s.Close()
		batch := Batch{IDs: s.ToDevice(s.FromInt64(tokens, int64(B), int64(n)), m.Device), Valid: valid}
		logits := m.Forward(s, batch, Options{Adapter: ad, Cache: cache})
		last := s.Contiguous(s.Select(logits, 1, int64(n-1))) // [B, V]
		v := s.Float32s(last)
		if err := s.Err(); err != nil {
			return nil, err
		}
		V := len(v) / B
		rows := make([][]float32, B)
		for r := range rows {
			rows[r] = v[r*V : (r+1)*V]
		}
		return rows, nil
	}
	logits, err := step(ids, valid, T)
	if err != nil {
		return nil, fmt.Errorf("model: prefill: %w", err)
	}
	next := make([]int64, B)
	live := make([]bool, B)
	for i := 0; i < cfg.MaxNewTokens; i++ {
		alive := false
		for r := range B {
			live[r] = !done[r]
			if done[r] {
				next[r] = cfg.PadID
				continue
			}
			tok := sample(logits[r], cfg, samplers[r])
			next[r] = tok
			out[r] = append(out[r], tok)
			if contains(cfg.EOS, tok) || (cfg.Stop != nil && cfg.Stop(r, out[r])) {
				done[r] = true
			} else {
				alive = true
			}
		}
		if !alive || i == cfg.MaxNewTokens-1 {
			break
		}
		// Finished rows ride along as padding until the batch ends.
		if logits, err = step(next, live, 1); err != nil {
			return nil, fmt.Errorf("model: decode step %d: %w", i+1, err)
		}
	}
	return out, nil
}

func contains(ids []int64, x int64) bool {
	for _, id := range ids {
		if id == x {
			return true
		}
	}
	return false
}

// sample picks the next token from one row of logits as Hugging Face's
// default processors do, in their order: temperature, top-k, top-p; greedy
// when the temperature is 0.
func sample(logits []float32, cfg GenConfig, rng *rand.Rand) int64 {
	if cfg.Temperature <= 0 {
		best := 0
		for i, x := range logits {
			if x > logits[best] {
				best = i
			}
		}
		return int64(best)
	}
	type cand struct {
		id int
		p  float64
	}
	c := make([]cand, len(logits))
	maxL := math.Inf(-1)
	for i, x := range logits {
		c[i] = cand{i, float64(x) / cfg.Temperature}
		maxL = math.Max(maxL, c[i].p)
	}
	sort.SliceStable(c, func(i, j int) bool { return c[i].p > c[j].p })
	if cfg.TopK > 0 && cfg.TopK < len(c) {
		c = c[:cfg.TopK]
	}
	sum := 0.0
	for i := range c {
		c[i].p = math.Exp(c[i].p - maxL)
		sum += c[i].p
	}
	for i := range c {
		c[i].p /= sum
	}
	if cfg.TopP > 0 && cfg.TopP < 1 {
		// Keep the smallest prefix whose mass reaches top_p (at least one).
		acc := 0.0
		for i := range c {
			acc += c[i].p
			if acc >= cfg.TopP {
				c = c[:i+1]
				break
			}
		}
		sum = 0
		for _, x := range c {
			sum += x.p
		}
		for i := range c {
			c[i].p /= sum
		}
	}
	u := rng.Float64()
	for _, x := range c {
		if u < x.p {
			return int64(x.id)
		}
		u -= x.p
	}
	return int64(c[len(c)-1].id)
}
