package scoring

import "math"

// exactSum adds float64 values without rounding error (Shewchuk's algorithm,
// as in Python's math.fsum): it keeps the exact sum as non-overlapping
// partials, so its Value, correctly rounded, does not depend on the order in
// which values were added or sums merged. That makes metrics merged from
// batches arriving in any order bit-identical to a single sequential pass.
type exactSum struct {
	Partials []float64 `json:"partials,omitempty"`
	// Counts of non-finite values, which do not enter the partials.
	PosInf int64 `json:"pos_inf,omitempty"`
	NegInf int64 `json:"neg_inf,omitempty"`
	NaN    int64 `json:"nan,omitempty"`
}

func (s *exactSum) Add(x float64) {
	switch {
	case math.IsNaN(x):
		s.NaN++
		return
	case math.IsInf(x, 1):
		s.PosInf++
		return
	case math.IsInf(x, -1):
		s.NegInf++
		return
	}
	i := 0
	for _, y := range s.Partials {
		if math.Abs(x) < math.Abs(y) {
			x, y = y, x
		}
		hi := x + y
		if math.IsInf(hi, 0) {
			// Overflow: the sum is beyond float64; record it as such.
			s.Partials = s.Partials[:0]
			if hi > 0 {
				s.PosInf++
			} else {
				s.NegInf++
			}
			return
		}
		lo := y - (hi - x)
		if lo != 0 {
			s.Partials[i] = lo
			i++
		}
		x = hi
	}
	s.Partials = append(s.Partials[:i], x)
}

// Merge adds o's exact sum to s.
func (s *exactSum) Merge(o *exactSum) {
	for _, p := range o.Partials {
		s.Add(p)
	}
	s.PosInf += o.PosInf
	s.NegInf += o.NegInf
	s.NaN += o.NaN
}

// Value is the exact sum rounded to the nearest float64 (ties to even).
func (s *exactSum) Value() float64 {
	switch {
	case s.NaN > 0 || (s.PosInf > 0 && s.NegInf > 0):
		return math.NaN()
	case s.PosInf > 0:
		return math.Inf(1)
	case s.NegInf > 0:
		return math.Inf(-1)
	}
	p := s.Partials
	n := len(p)
	if n == 0 {
		return 0
	}
	n--
	hi := p[n]
	lo := 0.0
	for n > 0 {
		x := hi
		n--
		y := p[n]
		hi = x + y
		yr := hi - x
		lo = y - yr
		if lo != 0 {
			break
		}
	}
	// Round half to even correctly when the rest of the partials push the
	// half-way case one way (CPython's math_fsum).
	if n > 0 && ((lo < 0 && p[n-1] < 0) || (lo > 0 && p[n-1] > 0)) {
		y := lo * 2
		x := hi + y
		yr := x - hi
		if y == yr {
			hi = x
		}
	}
	return hi
}

func (s *exactSum) clone() exactSum {
	c := *s
	c.Partials = append([]float64(nil), s.Partials...)
	return c
}
