package scoring

// The definitions in this file are those of Google's rouge-score package
// (rouge_scorer.RougeScorer(["rougeL"]) with its defaults: the default
// tokenizer, no stemmer, no summary splitting).

// RougeTokens is rouge-score's default tokenizer without stemming: lower-case
// (Python's str.lower), replace every run of characters outside [a-z0-9] with
// a space, split on whitespace and keep the non-empty tokens. So the tokens are
// the maximal runs of [a-z0-9] in the lower-cased text.
func RougeTokens(s string) []string {
	s = pyLower(s)
	var toks []string
	start := -1
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
		if alnum && start < 0 {
			start = i
		} else if !alnum && start >= 0 {
			toks = append(toks, s[start:i])
			start = -1
		}
	}
	if start >= 0 {
		toks = append(toks, s[start:])
	}
	return toks
}

// RougeScore is a precision, recall and F-measure triple.
type RougeScore struct {
	Precision, Recall, FMeasure float64
}

// RougeL is rouge-score's rougeL of a prediction against one target: with
// LCS the length of the longest common subsequence of the two token sequences
// (RougeTokens), P = LCS/|prediction|, R = LCS/|target| and F = 2PR/(P+R)
// (0 when P+R = 0). All three are 0 when either side has no tokens.
func RougeL(target, prediction string) RougeScore {
	return rougeLTokens(RougeTokens(target), RougeTokens(prediction))
}

// RougeLMulti is rouge-score's score_multi for rougeL: the score against the
// target with the highest F-measure (the first of equals). It is the zero
// score when targets is empty.
func RougeLMulti(targets []string, prediction string) RougeScore {
	pt := RougeTokens(prediction)
	var best RougeScore
	for i, t := range targets {
		s := rougeLTokens(RougeTokens(t), pt)
		if i == 0 || s.FMeasure > best.FMeasure {
			best = s
		}
	}
	return best
}

func rougeLTokens(target, pred []string) RougeScore {
	if len(target) == 0 || len(pred) == 0 {
		return RougeScore{}
	}
	lcs := lcsLength(target, pred)
	p := float64(lcs) / float64(len(pred))
	r := float64(lcs) / float64(len(target))
	f := 0.0
	if p+r > 0 {
		f = 2 * p * r / (p + r)
	}
	return RougeScore{Precision: p, Recall: r, FMeasure: f}
}

// lcsLength is the classic O(|a|·|b|) dynamic programme in O(|b|) memory.
func lcsLength(a, b []string) int {
	prev := make([]int32, len(b)+1)
	cur := make([]int32, len(b)+1)
	for i := range a {
		for j := range b {
			switch {
			case a[i] == b[j]:
				cur[j+1] = prev[j] + 1
			case prev[j+1] >= cur[j]:
				cur[j+1] = prev[j+1]
			default:
				cur[j+1] = cur[j]
			}
		}
		prev, cur = cur, prev
	}
	return int(prev[len(b)])
}
