package model

import "math"

// invFreq returns the rotary inverse frequencies for c, with Llama 3's
// rope_scaling applied, as Hugging Face's _compute_*_parameters do.
func invFreq(c *Config) []float64 {
	d := c.HeadDim
	out := make([]float64, d/2)
	for i := range out {
		out[i] = 1 / math.Pow(c.RopeTheta, float64(2*i)/float64(d))
	}
	if c.RopeScaling.Kind() != "llama3" {
		return out
	}
	r := c.RopeScaling
	old := float64(r.OriginalMaxPositionEmbeddings)
	lowWavelen := old / r.LowFreqFactor
	highWavelen := old / r.HighFreqFactor
	for i, f := range out {
		wavelen := 2 * math.Pi / f
		switch {
		case wavelen < highWavelen: // high frequency: unchanged
		case wavelen > lowWavelen: // low frequency: scaled down
			out[i] = f / r.Factor
		default: // in between: interpolated
			smooth := (old/wavelen - r.LowFreqFactor) / (r.HighFreqFactor - r.LowFreqFactor)
			out[i] = (1-smooth)*f/r.Factor + smooth*f
		}
	}
	return out
}

// ropeTables returns cos and sin of shape [len(pos), headDim], laid out as
// Hugging Face's cat(freqs, freqs). The angle is formed in float32 like
// PyTorch does, so long positions round the same way.
func ropeTables(inv []float64, pos []int64) (cos, sin []float32) {
	half := len(inv)
	d := 2 * half
	cos = make([]float32, len(pos)*d)
	sin = make([]float32, len(pos)*d)
	for p, position := range pos {
		for i, f := range inv {
			angle := float64(float32(f) * float32(position))
			c, s := float32(math.Cos(angle)), float32(math.Sin(angle))
			cos[p*d+i], cos[p*d+half+i] = c, c
			sin[p*d+i], sin[p*d+half+i] = s, s
		}
	}
	return cos, sin
}
