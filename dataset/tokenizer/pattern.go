package tokenizer

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// span is a byte range [start, end) of a string.
type span struct{ start, end int }

// matcher finds the non-overlapping, leftmost matches of a pattern, as
// Oniguruma's find_iter does in the Rust library.
type matcher interface {
	matches(s string, dst []span) []span
}

// literalMatcher matches a fixed string; an empty one matches nothing.
type literalMatcher struct{ lit string }

func (m literalMatcher) matches(s string, dst []span) []span {
	if m.lit == "" {
		return dst
	}
	for off := 0; off < len(s); {
		i := strings.Index(s[off:], m.lit)
		if i < 0 {
			break
		}
		dst = append(dst, span{off + i, off + i + len(m.lit)})
		off += i + len(m.lit)
	}
	return dst
}

// runeMatcher matches every single rune for which pred holds, as the Rust
// library's char-predicate patterns do.
type runeMatcher struct{ pred func(rune) bool }

func (m runeMatcher) matches(s string, dst []span) []span {
	for i := 0; i < len(s); {
		r, n := decodeRune(s, i)
		if m.pred(r) {
			dst = append(dst, span{i, i + n})
		}
		i += n
	}
	return dst
}

// regexMatcher is the general fallback for patterns without a hand-written
// matcher. regexp2 backtracks like Oniguruma (lookaround, leftmost-first
// alternation); the pattern is first rewritten where the two disagree.
type regexMatcher struct {
	re *regexp2.Regexp
}

func (m regexMatcher) matches(s string, dst []span) []span {
	if s == "" {
		return dst
	}
	runes := []rune(s)
	// regexp2 reports rune indices; map them back to byte offsets.
	offs := make([]int, len(runes)+1)
	b := 0
	for i, r := range runes {
		offs[i] = b
		b += utf8.RuneLen(r)
	}
	offs[len(runes)] = b
	mt, err := m.re.FindRunesMatch(runes)
	for err == nil && mt != nil {
		dst = append(dst, span{offs[mt.Index], offs[mt.Index+mt.Length]})
		mt, err = m.re.FindNextMatch(mt)
	}
	return dst
}

// Patterns with hand-written matchers (see also knownpattern.go). They are
// compared verbatim: any other spelling goes to the regex fallback, which
// gives the same result, slower.
const (
	gpt2Pattern   = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
	llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	qwen2Pattern  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// compileRegex returns a matcher for an Oniguruma pattern from tokenizer.json.
func compileRegex(pattern string) (matcher, error) {
	if m, ok := knownMatcher(pattern); ok {
		return m, nil
	}
	re, err := regexp2.Compile(onigToRegexp2(pattern), regexp2.Multiline)
	if err != nil {
		return nil, fmt.Errorf("regex %q: %w", pattern, err)
	}
	return regexMatcher{re: re}, nil
}

// onigWordClass spells Oniguruma's Unicode \w for regexp2, whose own \w lacks
// spacing marks, letter numbers and the Latin-1 quirks.
const onigWordClass = `\p{L}\p{Nl}\p{Other_Alphabetic}\p{M}\p{Nd}\p{Pc}\u00B2\u00B3\u00B9\u00BC-\u00BE`

// onigToRegexp2 rewrites the Oniguruma constructs whose meaning differs in
// regexp2: \w and \W, and \h (hex digit). \s (White_Space), \d (Nd), \p{..},
// lookaround, (?i:..) and leftmost-first alternation already agree.
func onigToRegexp2(p string) string {
	var b strings.Builder
	inClass := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\' && i+1 < len(p):
			next := p[i+1]
			i++
			switch {
			case next == 'w' && inClass > 0:
				b.WriteString(onigWordClass)
			case next == 'w':
				b.WriteString("[" + onigWordClass + "]")
			case next == 'W' && inClass == 0:
				b.WriteString("[^" + onigWordClass + "]")
			case next == 'h' && inClass > 0:
				b.WriteString("0-9a-fA-F")
			case next == 'h':
				b.WriteString("[0-9a-fA-F]")
			default:
				b.WriteByte('\\')
				b.WriteByte(next)
			}
		case c == '[':
			inClass++
			b.WriteByte(c)
			// A ']' right after '[' or '[^' is a literal in both dialects.
			if i+1 < len(p) && p[i+1] == '^' {
				b.WriteByte('^')
				i++
			}
			if i+1 < len(p) && p[i+1] == ']' {
				b.WriteString(`\]`)
				i++
			}
		case c == ']' && inClass > 0:
			inClass--
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// contraction returns the byte length of an English contraction suffix
// (s, t, re, ve, m, ll, d) at s[i:], or 0. With fold, letters match
// case-insensitively under Unicode simple case folding, as Oniguruma's (?i)
// does (so U+017F LATIN SMALL LETTER LONG S matches 's').
func contraction(s string, i int, fold bool) int {
	if i >= len(s) {
		return 0
	}
	lower := func(c byte) byte {
		if fold && c >= 'A' && c <= 'Z' {
			return c + 'a' - 'A'
		}
		return c
	}
	switch lower(s[i]) {
	case 's', 't', 'm', 'd':
		return 1
	case 'r', 'v':
		if i+1 < len(s) && lower(s[i+1]) == 'e' {
			return 2
		}
	case 'l':
		if i+1 < len(s) && lower(s[i+1]) == 'l' {
			return 2
		}
	case 0xC5:
		if fold && i+1 < len(s) && s[i+1] == 0xBF { // U+017F
			return 2
		}
	}
	return 0
}

// runEnd returns the end of the run of runes satisfying pred from i.
func runEnd(s string, i int, pred func(rune) bool) int {
	for i < len(s) {
		r, n := decodeRune(s, i)
		if !pred(r) {
			break
		}
		i += n
	}
	return i
}

func isOtherClass(r rune) bool { return !isSpace(r) && !isLetter(r) && !isNumber(r) }

// wsTail handles the shared tail `\s+(?!\S)|\s+` from a white-space rune at i:
// a white-space run followed by non-space gives back its last rune, so that
// the next token can take that space as its prefix.
func wsTail(s string, i, j int) int {
	if j == len(s) {
		return j
	}
	_, n := lastRune(s[i:j])
	if j-n > i {
		return j - n
	}
	return j
}

// gpt2Matcher is gpt2Pattern, the ByteLevel pre-tokenizer's regex.
type gpt2Matcher struct{}

func (gpt2Matcher) matches(s string, dst []span) []span {
	for i := 0; i < len(s); {
		end := gpt2MatchAt(s, i)
		dst = append(dst, span{i, end})
		i = end
	}
	return dst
}

func gpt2MatchAt(s string, i int) int {
	r, _ := decodeRune(s, i)
	if r == '\'' {
		if l := contraction(s, i+1, false); l > 0 {
			return i + 1 + l
		}
	}
	j := i
	if r == ' ' && i+1 < len(s) {
		j = i + 1
		r, _ = decodeRune(s, j)
	}
	switch {
	case isLetter(r):
		return runEnd(s, j, isLetter)
	case isNumber(r):
		return runEnd(s, j, isNumber)
	case !isSpace(r):
		return runEnd(s, j, isOtherClass)
	}
	// White space: the optional ' ' did not lead anywhere.
	return wsTail(s, i, runEnd(s, i, isSpace))
}

// llamaMatcher is llama3Pattern (maxDigits 3) or qwen2Pattern (maxDigits 1).
type llamaMatcher struct{ maxDigits int }

func (m llamaMatcher) matches(s string, dst []span) []span {
	for i := 0; i < len(s); {
		end := m.matchAt(s, i)
		dst = append(dst, span{i, end})
		i = end
	}
	return dst
}

func isCRLF(r rune) bool { return r == '\r' || r == '\n' }

func (m llamaMatcher) matchAt(s string, i int) int {
	r, n := decodeRune(s, i)
	// (?i:'s|'t|'re|'ve|'m|'ll|'d)
	if r == '\'' {
		if l := contraction(s, i+1, true); l > 0 {
			return i + 1 + l
		}
	}
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if isLetter(r) {
		return runEnd(s, i, isLetter)
	}
	if !isCRLF(r) && !isNumber(r) && i+n < len(s) {
		if r2, _ := decodeRune(s, i+n); isLetter(r2) {
			return runEnd(s, i+n, isLetter)
		}
	}
	// \p{N}{1,max}
	if isNumber(r) {
		j := i
		for k := 0; k < m.maxDigits && j < len(s); k++ {
			r2, n2 := decodeRune(s, j)
			if !isNumber(r2) {
				break
			}
			j += n2
		}
		return j
	}
	//  ?[^\s\p{L}\p{N}]+[\r\n]*
	j := i
	if r == ' ' && i+1 < len(s) {
		if r2, _ := decodeRune(s, i+1); isOtherClass(r2) {
			j = i + 1
		}
	}
	if r2, _ := decodeRune(s, j); isOtherClass(r2) {
		k := runEnd(s, j, isOtherClass)
		for k < len(s) && (s[k] == '\r' || s[k] == '\n') {
			k++
		}
		return k
	}
	// r is white space from here on.
	end := runEnd(s, i, isSpace)
	// \s*[\r\n]+ : backtracking leaves the match just after the run's last
	// line break.
	for p := end - 1; p >= i; p-- {
		if s[p] == '\r' || s[p] == '\n' {
			return p + 1
		}
	}
	return wsTail(s, i, end)
}

// splitBehavior is SplitDelimiterBehavior of the Rust library.
type splitBehavior int

const (
	splitRemoved splitBehavior = iota
	splitIsolated
	splitMergedWithPrevious
	splitMergedWithNext
	splitContiguous
)

func parseBehavior(s string) (splitBehavior, error) {
	switch strings.ToLower(s) {
	case "removed":
		return splitRemoved, nil
	case "isolated":
		return splitIsolated, nil
	case "mergedwithprevious", "merged_with_previous":
		return splitMergedWithPrevious, nil
	case "mergedwithnext", "merged_with_next":
		return splitMergedWithNext, nil
	case "contiguous":
		return splitContiguous, nil
	}
	return 0, fmt.Errorf("unknown split behavior %q", s)
}

// event is a span with whether it is a pattern match.
type event struct {
	span
	match bool
}

// splitter cuts strings at a matcher's matches with a behaviour, as Rust's
// NormalizedString::split does.
type splitter struct {
	m        matcher
	behavior splitBehavior
	invert   bool
}

// split appends to dst the kept, non-empty spans of s. scratch buffers are
// passed in so that the hot path does not allocate.
func (sp *splitter) split(s string, dst []span, ms []span, evs []event) ([]span, []span, []event) {
	if s == "" {
		return dst, ms, evs
	}
	ms = sp.m.matches(s, ms[:0])
	evs = evs[:0]
	prev := 0
	for _, m := range ms {
		if prev < m.start {
			evs = append(evs, event{span{prev, m.start}, sp.invert})
		}
		evs = append(evs, event{m, !sp.invert})
		prev = m.end
	}
	if prev < len(s) {
		evs = append(evs, event{span{prev, len(s)}, sp.invert})
	}
	emit := func(sp span) {
		if sp.end > sp.start {
			dst = append(dst, sp)
		}
	}
	switch sp.behavior {
	case splitIsolated:
		for _, e := range evs {
			emit(e.span)
		}
	case splitRemoved:
		for _, e := range evs {
			if !e.match {
				emit(e.span)
			}
		}
	case splitContiguous:
		var cur span
		have, prevMatch := false, false
		for _, e := range evs {
			if have && e.match == prevMatch {
				cur.end = e.end
			} else {
				if have {
					emit(cur)
				}
				cur, have = e.span, true
			}
			prevMatch = e.match
		}
		if have {
			emit(cur)
		}
	case splitMergedWithPrevious:
		var cur span
		have, prevMatch := false, false
		for _, e := range evs {
			if e.match && !prevMatch && have {
				cur.end = e.end
			} else {
				if have {
					emit(cur)
				}
				cur, have = e.span, true
			}
			prevMatch = e.match
		}
		if have {
			emit(cur)
		}
	case splitMergedWithNext:
		// Walk backwards: a match is glued to the piece after it.
		start := len(dst)
		var cur span
		have, prevMatch := false, false
		for k := len(evs) - 1; k >= 0; k-- {
			e := evs[k]
			if e.match && !prevMatch && have {
				cur.start = e.start
			} else {
				if have {
					emit(cur)
				}
				cur, have = e.span, true
			}
			prevMatch = e.match
		}
		if have {
			emit(cur)
		}
		for a, b := start, len(dst)-1; a < b; a, b = a+1, b-1 {
			dst[a], dst[b] = dst[b], dst[a]
		}
	}
	return dst, ms, evs
}
