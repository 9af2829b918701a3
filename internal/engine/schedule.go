package engine

import (
	"fmt"
	"math"
)

// Schedule gives the learning rate of each optimizer step, as Hugging Face's
// get_{constant,linear,cosine}_schedule_with_warmup do: step k (0-based)
// uses LR × λ(k), λ rising linearly from 0 over the warmup steps, then
// constant, or decaying linearly or along a half cosine to 0 at Total.
type Schedule struct {
	Kind   string  // constant, linear or cosine
	LR     float64 // peak learning rate
	Warmup int     // warmup steps
	Total  int     // all optimizer steps
}

// Validate reports a schedule that cannot run.
func (s Schedule) Validate() error {
	switch s.Kind {
	case "constant", "linear", "cosine":
	default:
		return fmt.Errorf("schedule %q: want constant, linear or cosine", s.Kind)
	}
	if s.LR <= 0 || s.Warmup < 0 || s.Total <= 0 {
		return fmt.Errorf("schedule: lr %g, warmup %d, total %d: want lr > 0, warmup >= 0, total > 0", s.LR, s.Warmup, s.Total)
	}
	return nil
}

// At returns the learning rate of step k.
func (s Schedule) At(k int) float64 {
	if k < s.Warmup {
		return s.LR * float64(k) / float64(max(1, s.Warmup))
	}
	switch s.Kind {
	case "linear":
		return s.LR * max(0, float64(s.Total-k)/float64(max(1, s.Total-s.Warmup)))
	case "cosine":
		progress := float64(k-s.Warmup) / float64(max(1, s.Total-s.Warmup))
		return s.LR * max(0, 0.5*(1+math.Cos(math.Pi*progress)))
	}
	return s.LR
}

// ClipScale returns the factor torch.nn.utils.clip_grad_norm_ multiplies
// the gradients by: min(1, maxNorm / (norm + 1e-6)); 1 when clipping is off.
func ClipScale(norm, maxNorm float64) float64 {
	if maxNorm <= 0 {
		return 1
	}
	return min(1, maxNorm/(norm+1e-6))
}

// Norm is the Euclidean norm of g, accumulated in float64.
func Norm(g []float32) float64 {
	var s float64
	for _, x := range g {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}
