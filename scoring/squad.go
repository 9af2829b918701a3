package scoring

import "strings"

// The definitions in this file are those of the official SQuAD v1.1
// evaluation script (evaluate-v1.1.py, Rajpurkar et al. 2016).

// asciiPunct is Python's string.punctuation.
const asciiPunct = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"

// NormalizeAnswer is SQuAD's normalize_answer: lower-case (Python's
// str.lower), remove the ASCII punctuation characters of Python's
// string.punctuation, replace the articles a, an and the that stand between
// word boundaries (Python's Unicode \b) with a space, and collapse runs of
// whitespace to one space with none at either end.
func NormalizeAnswer(s string) string {
	s = pyLower(s)
	s = strings.Map(func(r rune) rune {
		if r < 0x80 && strings.IndexByte(asciiPunct, byte(r)) >= 0 {
			return -1
		}
		return r
	}, s)
	s = removeArticles(s)
	return strings.Join(pyFields(s), " ")
}

// removeArticles is re.sub(r'\b(a|an|the)\b', ' ', s) with Python's Unicode
// word characters.
func removeArticles(s string) string {
	if !strings.Contains(s, "a") && !strings.Contains(s, "the") {
		return s
	}
	rs := []rune(s)
	out := make([]rune, 0, len(rs))
	for i := 0; i < len(rs); {
		if i == 0 || !pyIsWord(rs[i-1]) {
			if n := articleAt(rs, i); n > 0 {
				out = append(out, ' ')
				i += n
				continue
			}
		}
		out = append(out, rs[i])
		i++
	}
	return string(out)
}

// articleAt is the length of the article that starts at rs[i] and ends at a
// word boundary, or 0.
func articleAt(rs []rune, i int) int {
	for _, w := range [...]string{"a", "an", "the"} {
		n := len(w)
		if i+n > len(rs) {
			continue
		}
		ok := true
		for k := 0; k < n; k++ {
			if rs[i+k] != rune(w[k]) {
				ok = false
				break
			}
		}
		if ok && (i+n == len(rs) || !pyIsWord(rs[i+n])) {
			return n
		}
	}
	return 0
}

// ExactMatch is SQuAD's exact_match_score maximised over the references:
// whether NormalizeAnswer(prediction) equals NormalizeAnswer of at least one
// reference. It is false when refs is empty.
func ExactMatch(prediction string, refs []string) bool {
	p := NormalizeAnswer(prediction)
	for _, r := range refs {
		if NormalizeAnswer(r) == p {
			return true
		}
	}
	return false
}

// ExactMatchRaw is exact string equality, without any normalisation, with at
// least one reference.
func ExactMatchRaw(prediction string, refs []string) bool {
	for _, r := range refs {
		if r == prediction {
			return true
		}
	}
	return false
}

// TokenF1 is SQuAD's f1_score maximised over the references
// (metric_max_over_ground_truths). For one reference: the tokens are the
// whitespace-separated words of NormalizeAnswer; common is the size of the
// multiset intersection of prediction and reference tokens; if common is 0 the
// score is 0 (also when both are empty), else with P = common/|prediction| and
// R = common/|reference| it is 2PR/(P+R). The score is in [0, 1]; it is 0 when
// refs is empty.
func TokenF1(prediction string, refs []string) float64 {
	pt := pyFields(NormalizeAnswer(prediction))
	best := 0.0
	for _, r := range refs {
		if f := tokenF1(pt, pyFields(NormalizeAnswer(r))); f > best {
			best = f
		}
	}
	return best
}

func tokenF1(pred, gold []string) float64 {
	if len(pred) == 0 || len(gold) == 0 {
		return 0
	}
	counts := make(map[string]int, len(gold))
	for _, t := range gold {
		counts[t]++
	}
	same := 0
	for _, t := range pred {
		if counts[t] > 0 {
			counts[t]--
			same++
		}
	}
	if same == 0 {
		return 0
	}
	p := float64(same) / float64(len(pred))
	r := float64(same) / float64(len(gold))
	return 2 * p * r / (p + r)
}
