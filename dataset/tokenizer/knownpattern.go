package tokenizer

import (
	"strings"
	"unicode"
)

// More hand-written matchers for pre-tokenizer regexes of widely used
// models: DeepSeek V3 (three Splits) and OpenAI's o200k (GPT-4o, gpt-oss).
// Like gpt2Matcher and llamaMatcher they reproduce Oniguruma's
// leftmost-first backtracking exactly, and are checked against regexp2
// running the pattern itself (TestFastMatchersAgreeWithRegex, FuzzMatchers).

const (
	numbers3Pattern    = `\p{N}{1,3}`
	deepseekCJKPattern = `[一-龥぀-ゟ゠-ヿ]+`
	deepseekPattern    = "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
	o200kPattern       = "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)

// canonicalPattern spells literal CR and LF characters as \r and \n:
// tokenizer.json files write DeepSeek's pattern either way, and both match
// the same text.
func canonicalPattern(p string) string {
	if !strings.ContainsAny(p, "\r\n") {
		return p
	}
	return strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(p)
}

// knownMatcher returns the hand-written matcher of a pattern, if any.
func knownMatcher(pattern string) (matcher, bool) {
	switch canonicalPattern(pattern) {
	case gpt2Pattern:
		return gpt2Matcher{}, true
	case llama3Pattern:
		return llamaMatcher{maxDigits: 3}, true
	case qwen2Pattern:
		return llamaMatcher{maxDigits: 1}, true
	case numbers3Pattern:
		return numberMatcher{max: 3}, true
	case deepseekCJKPattern:
		return runMatcher{isDeepseekCJK}, true
	case deepseekPattern:
		return searchMatcher{deepseekMatchAt}, true
	case o200kPattern:
		return searchMatcher{o200kMatchAt}, true
	}
	return nil, false
}

// searchMatcher scans for the leftmost match: at each position matchAt
// returns the end of the match starting there, or -1.
type searchMatcher struct{ matchAt func(s string, i int) int }

func (m searchMatcher) matches(s string, dst []span) []span {
	for i := 0; i < len(s); {
		if end := m.matchAt(s, i); end > i {
			dst = append(dst, span{i, end})
			i = end
			continue
		}
		_, n := decodeRune(s, i)
		i += n
	}
	return dst
}

// numberMatcher is \p{N}{1,max}.
type numberMatcher struct{ max int }

func (m numberMatcher) matches(s string, dst []span) []span {
	for i := 0; i < len(s); {
		r, n := decodeRune(s, i)
		if !isNumber(r) {
			i += n
			continue
		}
		j := i + n
		for k := 1; k < m.max && j < len(s); k++ {
			r2, n2 := decodeRune(s, j)
			if !isNumber(r2) {
				break
			}
			j += n2
		}
		dst = append(dst, span{i, j})
		i = j
	}
	return dst
}

// runMatcher matches maximal runs of runes satisfying pred (a class with +).
type runMatcher struct{ pred func(rune) bool }

func (m runMatcher) matches(s string, dst []span) []span {
	for i := 0; i < len(s); {
		r, n := decodeRune(s, i)
		if !m.pred(r) {
			i += n
			continue
		}
		j := runEnd(s, i+n, m.pred)
		dst = append(dst, span{i, j})
		i = j
	}
	return dst
}

func isDeepseekCJK(r rune) bool {
	return (r >= 0x4E00 && r <= 0x9FA5) || (r >= 0x3040 && r <= 0x309F) || (r >= 0x30A0 && r <= 0x30FF)
}

func isASCIILetter(c byte) bool { return (c|0x20) >= 'a' && (c|0x20) <= 'z' }

func isPunctOrSymbol(r rune) bool {
	if r < 0x80 {
		return asciiClass[r]&clsPunct != 0
	}
	return unicode.IsPunct(r) || unicode.IsSymbol(r)
}

func isLetterOrMark(r rune) bool { return isLetter(r) || (r >= 0x300 && unicode.IsMark(r)) }

// deepseekMatchAt is deepseekPattern at i:
//
//	[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+
//	| [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
//	|  ?[\p{P}\p{S}]+[\r\n]*
//	| \s*[\r\n]+ | \s+(?!\S) | \s+
func deepseekMatchAt(s string, i int) int {
	r, n := decodeRune(s, i)
	if r < 0x80 && asciiClass[r]&clsPunct != 0 && i+1 < len(s) && isASCIILetter(s[i+1]) {
		j := i + 2
		for j < len(s) && isASCIILetter(s[j]) {
			j++
		}
		return j
	}
	if !isCRLF(r) && !isLetter(r) && !isPunctOrSymbol(r) && i+n < len(s) {
		if r2, _ := decodeRune(s, i+n); isLetterOrMark(r2) {
			return runEnd(s, i+n, isLetterOrMark)
		}
	}
	if isLetterOrMark(r) {
		return runEnd(s, i, isLetterOrMark)
	}
	j := i
	if r == ' ' && i+1 < len(s) {
		if r2, _ := decodeRune(s, i+1); isPunctOrSymbol(r2) {
			j = i + 1
		}
	}
	if r2, _ := decodeRune(s, j); isPunctOrSymbol(r2) {
		k := runEnd(s, j, isPunctOrSymbol)
		for k < len(s) && (s[k] == '\r' || s[k] == '\n') {
			k++
		}
		return k
	}
	if !isSpace(r) {
		return -1
	}
	return spaceAlternatives(s, i)
}

// spaceAlternatives is `\s*[\r\n]+|\s+(?!\S)|\s+` at a white-space rune.
func spaceAlternatives(s string, i int) int {
	end := runEnd(s, i, isSpace)
	for p := end - 1; p >= i; p-- {
		if s[p] == '\r' || s[p] == '\n' {
			return p + 1
		}
	}
	return wsTail(s, i, end)
}

// o200k letter classes: upper-ish [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}] and
// lower-ish [\p{Ll}\p{Lm}\p{Lo}\p{M}].
func isO200kUpper(r rune) bool {
	if r < 0x80 {
		return r >= 'A' && r <= 'Z'
	}
	return unicode.IsUpper(r) || unicode.IsTitle(r) || unicode.In(r, unicode.Lm, unicode.Lo) || unicode.IsMark(r)
}

func isO200kLower(r rune) bool {
	if r < 0x80 {
		return r >= 'a' && r <= 'z'
	}
	return unicode.IsLower(r) || unicode.In(r, unicode.Lm, unicode.Lo) || unicode.IsMark(r)
}

// optContraction adds an optional (?i:'s|'t|'re|'ve|'m|'ll|'d) at e.
func optContraction(s string, e int) int {
	if e < len(s) && s[e] == '\'' {
		if l := contraction(s, e+1, true); l > 0 {
			return e + 1 + l
		}
	}
	return e
}

// o200kAlt1 is [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+ at
// k, then the optional contraction; -1 if it fails. When the upper-ish run
// is not followed by a lower-ish rune, backtracking hands its last
// lower-ish rune (Lm, Lo or M) to the second class.
func o200kAlt1(s string, k int) int {
	j := runEnd(s, k, isO200kUpper)
	if j < len(s) {
		if r, _ := decodeRune(s, j); isO200kLower(r) {
			return optContraction(s, runEnd(s, j, isO200kLower))
		}
	}
	for p := j; p > k; {
		r, n := lastRune(s[k:p])
		p -= n
		if isO200kLower(r) {
			return optContraction(s, p+n)
		}
	}
	return -1
}

// o200kAlt2 is [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]* at k,
// then the optional contraction; -1 if it fails.
func o200kAlt2(s string, k int) int {
	j := runEnd(s, k, isO200kUpper)
	if j == k {
		return -1
	}
	return optContraction(s, runEnd(s, j, isO200kLower))
}

// o200kMatchAt is o200kPattern at i.
func o200kMatchAt(s string, i int) int {
	r, n := decodeRune(s, i)
	// [^\r\n\p{L}\p{N}]? is tried consumed first, then empty, for each of
	// the two letter alternatives in turn.
	c0 := !isCRLF(r) && !isLetter(r) && !isNumber(r) && i+n < len(s)
	for _, alt := range [2]func(string, int) int{o200kAlt1, o200kAlt2} {
		if c0 {
			if e := alt(s, i+n); e > 0 {
				return e
			}
		}
		if e := alt(s, i); e > 0 {
			return e
		}
	}
	if isNumber(r) {
		j := i + n
		for k := 1; k < 3 && j < len(s); k++ {
			r2, n2 := decodeRune(s, j)
			if !isNumber(r2) {
				break
			}
			j += n2
		}
		return j
	}
	j := i
	if r == ' ' && i+1 < len(s) {
		if r2, _ := decodeRune(s, i+1); isOtherClass(r2) {
			j = i + 1
		}
	}
	if r2, _ := decodeRune(s, j); isOtherClass(r2) {
		k := runEnd(s, j, isOtherClass)
		for k < len(s) && (s[k] == '\r' || s[k] == '\n' || s[k] == '/') {
			k++
		}
		return k
	}
	return spaceAlternatives(s, i)
}
