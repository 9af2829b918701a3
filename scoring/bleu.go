package scoring

import (
	"math"
	"strings"
	"unicode/utf8"
)

// The definitions in this file are those of sacreBLEU 2.x (Post, 2018):
// BLEU() with its defaults, i.e. tokenize="13a", lowercase=False,
// smooth_method="exp", max_ngram_order=4, effective_order=False, and corpus
// statistics summed over segments before the score is computed.

// Tokenize13a is sacreBLEU's Tokenizer13a (the tokenisation of mteval-v13a.pl):
//
//  1. remove "<skipped>", join "-\n" line breaks, turn "\n" into " ";
//  2. unescape &quot; &amp; &lt; &gt; (in that order, each once);
//  3. surround the line with spaces and apply, in order, the regexes
//     ([\{-\~\[-\` -\&\(-\+\:-\@\/]) → " \1 "     (ASCII punctuation but ' , - .)
//     ([^0-9])([\.,])                 → "\1 \2 "   (. and , unless after a digit)
//     ([\.,])([^0-9])                 → " \1 \2"   (. and , unless before a digit)
//     ([0-9])(-)                      → "\1 \2 "   (- after a digit)
//  4. split on whitespace and join with single spaces.
//
// Each regex is applied like Python's re.sub: left to right, non-overlapping
// matches, a match consuming both of its characters.
func Tokenize13a(line string) string {
	line = strings.ReplaceAll(line, "<skipped>", "")
	line = strings.ReplaceAll(line, "-\n", "")
	line = strings.ReplaceAll(line, "\n", " ")
	if strings.Contains(line, "&") {
		line = strings.ReplaceAll(line, "&quot;", "\"")
		line = strings.ReplaceAll(line, "&amp;", "&")
		line = strings.ReplaceAll(line, "&lt;", "<")
		line = strings.ReplaceAll(line, "&gt;", ">")
	}
	b := make([]byte, 0, 2*len(line)+8)
	b = append(b, ' ')
	for i := 0; i < len(line); i++ {
		c := line[i]
		if punct13a(c) {
			b = append(b, ' ', c, ' ')
		} else {
			b = append(b, c)
		}
	}
	b = append(b, ' ')
	b = pairPass(b, func(x rune) bool { return !isDigit(x) }, isDotComma, "\x01 \x02 ")
	b = pairPass(b, isDotComma, func(x rune) bool { return !isDigit(x) }, " \x01 \x02")
	b = pairPass(b, isDigit, func(x rune) bool { return x == '-' }, "\x01 \x02 ")
	return strings.Join(pyFields(string(b)), " ")
}

// punct13a is the first regex's character class: the ranges {-~, [-`, space-&,
// (-+, :-@ and /.
func punct13a(c byte) bool {
	return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&') ||
		(c >= '(' && c <= '+') || (c >= ':' && c <= '@') || c == '/'
}

func isDigit(r rune) bool    { return r >= '0' && r <= '9' }
func isDotComma(r rune) bool { return r == '.' || r == ',' }

// pairPass is re.sub(r'(A)(B)', tmpl, s) for single-character classes A and B;
// tmpl writes \1 as \x01 and \2 as \x02. Characters are code points, as in
// Python; bytes that are not UTF-8 count as one character each.
func pairPass(s []byte, first, second func(rune) bool, tmpl string) []byte {
	out := make([]byte, 0, len(s)+len(s)/4+8)
	for i := 0; i < len(s); {
		r1, n1 := utf8.DecodeRune(s[i:])
		if first(r1) && i+n1 < len(s) {
			r2, n2 := utf8.DecodeRune(s[i+n1:])
			if second(r2) {
				for j := 0; j < len(tmpl); j++ {
					switch tmpl[j] {
					case 1:
						out = append(out, s[i:i+n1]...)
					case 2:
						out = append(out, s[i+n1:i+n1+n2]...)
					default:
						out = append(out, tmpl[j])
					}
				}
				i += n1 + n2
				continue
			}
		}
		out = append(out, s[i:i+n1]...)
		i += n1
	}
	return out
}

// BLEUOrder is the largest n-gram order of the default BLEU.
const BLEUOrder = 4

// BLEUStats are the sufficient statistics of corpus BLEU, summed over
// segments: the hypothesis length, the (closest) reference length and, per
// n-gram order n = 1..Order, the clipped matches and the hypothesis n-grams.
// Sums are exact, so statistics added in any order, or merged from any split
// of the corpus, give the same score.
type BLEUStats struct {
	Order   int     `json:"order,omitempty"` // largest n-gram order, 0 meaning BLEUOrder
	SysLen  int64   `json:"sys_len"`         // hypothesis tokens
	RefLen  int64   `json:"ref_len"`         // closest reference tokens
	Correct []int64 `json:"correct"`         // clipped matching n-grams, per order
	Total   []int64 `json:"total"`           // hypothesis n-grams, per order
}

func (s *BLEUStats) order() int {
	if s.Order <= 0 {
		return BLEUOrder
	}
	return s.Order
}

func (s *BLEUStats) init() {
	n := s.order()
	if len(s.Correct) != n {
		s.Correct = append(s.Correct, make([]int64, n-len(s.Correct))...)[:n]
	}
	if len(s.Total) != n {
		s.Total = append(s.Total, make([]int64, n-len(s.Total))...)[:n]
	}
}

// Add adds one segment: the hypothesis and its references, both tokenised
// with tok (Tokenize13a when nil) after trailing whitespace is stripped, as
// sacreBLEU does. Empty references are ignored like sacreBLEU's missing ones;
// a segment with no non-empty reference adds nothing and Add reports false
// (sacreBLEU refuses such a corpus).
func (s *BLEUStats) Add(hyp string, refs []string, tok func(string) string) bool {
	if tok == nil {
		tok = Tokenize13a
	}
	s.init()
	n := s.order()
	var refMax map[string]int
	var refLens []int
	for _, r := range refs {
		if r == "" {
			continue
		}
		toks := pyFields(tok(pyRStrip(r)))
		refLens = append(refLens, len(toks))
		counts := ngramCounts(toks, n)
		if refMax == nil {
			refMax = counts
			continue
		}
		for g, c := range counts {
			if c > refMax[g] {
				refMax[g] = c
			}
		}
	}
	if len(refLens) == 0 {
		return false
	}
	htoks := pyFields(tok(pyRStrip(hyp)))
	s.SysLen += int64(len(htoks))
	s.RefLen += int64(closestRefLen(len(htoks), refLens))
	for g, c := range ngramCounts(htoks, n) {
		k := strings.Count(g, " ") // n-gram order - 1
		s.Total[k] += int64(c)
		if m := refMax[g]; m > 0 {
			s.Correct[k] += int64(min(c, m))
		}
	}
	return true
}

// ngramCounts counts the n-grams of orders 1..n, each keyed by its tokens
// joined with a space (which no token contains).
func ngramCounts(toks []string, n int) map[string]int {
	m := make(map[string]int, len(toks)*n)
	for k := 1; k <= n; k++ {
		for i := 0; i+k <= len(toks); i++ {
			m[strings.Join(toks[i:i+k], " ")]++
		}
	}
	return m
}

// closestRefLen is sacreBLEU's _get_closest_ref_len: the reference length
// nearest the hypothesis length, the shorter one on a tie.
func closestRefLen(hyp int, refs []int) int {
	best, bestDiff := -1, -1
	for _, r := range refs {
		d := hyp - r
		if d < 0 {
			d = -d
		}
		if bestDiff == -1 || d < bestDiff {
			best, bestDiff = r, d
		} else if d == bestDiff && r < best {
			best = r
		}
	}
	return best
}

// Merge adds o's statistics to s. Both must have the same order.
func (s *BLEUStats) Merge(o *BLEUStats) {
	s.init()
	s.SysLen += o.SysLen
	s.RefLen += o.RefLen
	for i := range o.Correct {
		s.Correct[i] += o.Correct[i]
	}
	for i := range o.Total {
		s.Total[i] += o.Total[i]
	}
}

// BLEUSmoothing names sacreBLEU's smoothing methods (Chen and Cherry, 2014).
type BLEUSmoothing string

const (
	SmoothNone  BLEUSmoothing = "none"  // a zero precision makes the score 0
	SmoothFloor BLEUSmoothing = "floor" // a zero count is replaced by the smoothing value (default 0.1)
	SmoothAddK  BLEUSmoothing = "add-k" // k (default 1) added to matches and totals of orders >= 2
	SmoothExp   BLEUSmoothing = "exp"   // NIST: the k-th zero precision is 1/(2^k · total); the default
)

// BLEUOptions are sacreBLEU's compute_bleu parameters. The zero value is the
// default corpus BLEU: exp smoothing, no effective order.
type BLEUOptions struct {
	Smooth BLEUSmoothing // "" means SmoothExp
	// SmoothValue is the floor or k; nil takes sacreBLEU's default (0.1 or 1).
	SmoothValue *float64
	// EffectiveOrder averages only over the orders that have hypothesis n-grams
	// (sacreBLEU's effective_order, recommended for sentence BLEU only).
	EffectiveOrder bool
}

// BLEUResult is a BLEU score with what it is made of.
type BLEUResult struct {
	Score      float64   // 0..100
	Precisions []float64 // per order, 0..100, after smoothing
	BP         float64   // brevity penalty
	SysLen     int64
	RefLen     int64
}

// Score is sacreBLEU's compute_bleu on these statistics:
//
//	BP = 1 if SysLen >= RefLen, exp(1 - RefLen/SysLen) if 0 < SysLen < RefLen, 0 if SysLen = 0;
//	p_n = 100 · Correct_n / Total_n (smoothed where Correct_n = 0);
//	BLEU = BP · exp(Σ_{n=1..N} log p_n / N), with log 0 taken as -9999999999,
//
// where a total of 0 stops the orders (their precisions stay 0) and the score
// is 0 when no n-gram of any order matches.
func (s *BLEUStats) Score(opt BLEUOptions) BLEUResult {
	s.init()
	n := s.order()
	method := opt.Smooth
	if method == "" {
		method = SmoothExp
	}
	smoothVal := 0.0
	switch method {
	case SmoothFloor:
		smoothVal = 0.1
	case SmoothAddK:
		smoothVal = 1
	}
	if opt.SmoothValue != nil {
		smoothVal = *opt.SmoothValue
	}
	res := BLEUResult{Precisions: make([]float64, n), SysLen: s.SysLen, RefLen: s.RefLen}
	switch {
	case s.SysLen < s.RefLen && s.SysLen > 0:
		res.BP = math.Exp(1 - float64(s.RefLen)/float64(s.SysLen))
	case s.SysLen < s.RefLen:
		res.BP = 0
	default:
		res.BP = 1
	}
	anyMatch := false
	for _, c := range s.Correct {
		if c != 0 {
			anyMatch = true
		}
	}
	if !anyMatch {
		return res
	}
	correct := make([]float64, n)
	total := make([]float64, n)
	for i := 0; i < n; i++ {
		correct[i] = float64(s.Correct[i])
		total[i] = float64(s.Total[i])
	}
	smoothMteval := 1.0
	effOrder := n
	for k := 1; k <= n; k++ {
		if method == SmoothAddK && k > 1 {
			correct[k-1] += smoothVal
			total[k-1] += smoothVal
		}
		if total[k-1] == 0 {
			break
		}
		if opt.EffectiveOrder {
			effOrder = k
		}
		if correct[k-1] == 0 {
			switch method {
			case SmoothExp:
				smoothMteval *= 2
				res.Precisions[k-1] = 100 / (smoothMteval * total[k-1])
			case SmoothFloor:
				res.Precisions[k-1] = 100 * smoothVal / total[k-1]
			}
		} else {
			res.Precisions[k-1] = 100 * correct[k-1] / total[k-1]
		}
	}
	sum := 0.0
	for _, p := range res.Precisions[:effOrder] {
		sum += myLog(p)
	}
	res.Score = res.BP * math.Exp(sum/float64(effOrder))
	return res
}

// myLog is sacreBLEU's my_log: log, with log 0 = -9999999999.
func myLog(x float64) float64 {
	if x == 0 {
		return -9999999999
	}
	return math.Log(x)
}

// CorpusBLEU is sacreBLEU's corpus_score with default settings: refs[i] holds
// the references of hyps[i]. Segments with no non-empty reference are skipped.
func CorpusBLEU(hyps []string, refs [][]string) BLEUResult {
	var s BLEUStats
	for i, h := range hyps {
		s.Add(h, refs[i], nil)
	}
	return s.Score(BLEUOptions{})
}
