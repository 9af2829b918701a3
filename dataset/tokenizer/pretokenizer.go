package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// piece is a pre-token: a slice of normalized text. first tells whether it
// starts at offset 0 of the original input, which Metaspace's
// prepend_scheme "first" depends on.
type piece struct {
	text  string
	first bool
}

// scratch holds per-call buffers so that pre-tokenization does not allocate
// on the hot path.
type scratch struct {
	pieces []piece // output of the pre-tokenizer
	a, b   []piece // sequencePre's intermediate steps
	spans  []span
	ms     []span
	evs    []event
	ids    []int32
}

// preTokenizer splits a piece into pieces, appending them to dst.
type preTokenizer interface {
	preTokenize(dst []piece, p piece, sc *scratch) []piece
}

// splitPieces applies sp to p and appends the resulting pieces.
func splitPieces(dst []piece, p piece, sp *splitter, sc *scratch) []piece {
	sc.spans, sc.ms, sc.evs = sp.split(p.text, sc.spans[:0], sc.ms, sc.evs)
	for _, s := range sc.spans {
		dst = append(dst, piece{text: p.text[s.start:s.end], first: p.first && s.start == 0})
	}
	return dst
}

type splitPre struct{ sp splitter }

func (s *splitPre) preTokenize(dst []piece, p piece, sc *scratch) []piece {
	return splitPieces(dst, p, &s.sp, sc)
}

// byteLevelPre is the ByteLevel pre-tokenizer. When it is the last step
// before a BPE model, encode is false: the model then works on raw bytes and
// the byte-to-alphabet mapping is folded into its vocabulary.
type byteLevelPre struct {
	addPrefixSpace bool
	useRegex       bool
	encode         bool
}

var gpt2Splitter = splitter{m: gpt2Matcher{}, behavior: splitIsolated}

func (b *byteLevelPre) preTokenize(dst []piece, p piece, sc *scratch) []piece {
	if b.addPrefixSpace && !strings.HasPrefix(p.text, " ") {
		p.text = " " + p.text
	}
	start := len(dst)
	if b.useRegex {
		dst = splitPieces(dst, p, &gpt2Splitter, sc)
	} else if p.text != "" {
		dst = append(dst, p)
	}
	if b.encode {
		for i := start; i < len(dst); i++ {
			dst[i].text = toByteAlphabet(dst[i].text)
		}
	}
	return dst
}

type prependScheme int

const (
	prependAlways prependScheme = iota
	prependNever
	prependFirst
)

type metaspacePre struct {
	replacement string
	scheme      prependScheme
	split       bool
	sp          splitter
}

func (m *metaspacePre) preTokenize(dst []piece, p piece, sc *scratch) []piece {
	p.text = strings.ReplaceAll(p.text, " ", m.replacement)
	if !strings.HasPrefix(p.text, m.replacement) &&
		(m.scheme == prependAlways || (m.scheme == prependFirst && p.first)) {
		p.text = m.replacement + p.text
	}
	if !m.split {
		if p.text != "" {
			dst = append(dst, p)
		}
		return dst
	}
	return splitPieces(dst, p, &m.sp, sc)
}

// wordMatcher is `\w+|[^\w\s]+`, the Whitespace pre-tokenizer's regex. The
// Rust library compiles this one with the regex crate, not Oniguruma, so \w
// is the regex crate's Unicode word class.
type wordMatcher struct{}

func (wordMatcher) matches(s string, dst []span) []span {
	for i := 0; i < len(s); {
		r, n := decodeRune(s, i)
		switch {
		case isRegexWord(r):
			j := runEnd(s, i, isRegexWord)
			dst = append(dst, span{i, j})
			i = j
		case isSpace(r):
			i += n
		default:
			j := runEnd(s, i, func(r rune) bool { return !isRegexWord(r) && !isSpace(r) })
			dst = append(dst, span{i, j})
			i = j
		}
	}
	return dst
}

type sequencePre []preTokenizer

func (q sequencePre) preTokenize(dst []piece, p piece, sc *scratch) []piece {
	// Each step reads one buffer and writes the other; the last writes dst.
	cur := append(sc.a[:0], p)
	for k, step := range q {
		var out []piece
		if k == len(q)-1 {
			out = dst
		} else {
			out = sc.b[:0]
		}
		for _, c := range cur {
			out = step.preTokenize(out, c, sc)
		}
		if k == len(q)-1 {
			dst = out
		} else {
			sc.a, sc.b = out, cur[:0]
			cur = sc.a
		}
	}
	return dst
}

// bertPre is BertPreTokenizer: split on white space (removed), then isolate
// every punctuation character; done in one pass.
type bertPre struct{}

var (
	wsRemoved     = splitter{m: runeMatcher{isSpace}, behavior: splitRemoved}
	wordsSplitter = splitter{m: wordMatcher{}, behavior: splitRemoved, invert: true}
)

func (bertPre) preTokenize(dst []piece, p piece, sc *scratch) []piece {
	s := p.text
	start := -1 // start of the current word, -1 if none
	emit := func(a, b int) {
		dst = append(dst, piece{text: s[a:b], first: p.first && a == 0})
	}
	for i := 0; i < len(s); {
		r, n := decodeRune(s, i)
		switch {
		case isSpace(r):
			if start >= 0 {
				emit(start, i)
				start = -1
			}
		case isBertPunc(r):
			if start >= 0 {
				emit(start, i)
				start = -1
			}
			emit(i, i+n)
		default:
			if start < 0 {
				start = i
			}
		}
		i += n
	}
	if start >= 0 {
		emit(start, len(s))
	}
	return dst
}

type fixedLengthPre struct{ n int }

func (f fixedLengthPre) preTokenize(dst []piece, p piece, sc *scratch) []piece {
	s := p.text
	for start := 0; start < len(s); {
		end, k := start, 0
		for end < len(s) && k < f.n {
			_, w := utf8.DecodeRuneInString(s[end:])
			end += w
			k++
		}
		dst = append(dst, piece{text: s[start:end], first: p.first && start == 0})
		start = end
	}
	return dst
}

func buildPreTokenizer(raw json.RawMessage, path string) (preTokenizer, error) {
	if isNull(raw) {
		return nil, nil
	}
	var c struct {
		Type             string            `json:"type"`
		PreTokenizers    []json.RawMessage `json:"pretokenizers"`
		Pattern          patternJSON       `json:"pattern"`
		Behavior         string            `json:"behavior"`
		Invert           bool              `json:"invert"`
		AddPrefixSpace   *bool             `json:"add_prefix_space"`
		UseRegex         *bool             `json:"use_regex"`
		Replacement      string            `json:"replacement"`
		PrependScheme    string            `json:"prepend_scheme"`
		Split            *bool             `json:"split"`
		IndividualDigits bool              `json:"individual_digits"`
		Delimiter        string            `json:"delimiter"`
		Length           int               `json:"length"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fieldErr(path, err)
	}
	switch c.Type {
	case "Sequence":
		var q sequencePre
		for i, r := range c.PreTokenizers {
			p, err := buildPreTokenizer(r, fmt.Sprintf("%s.pretokenizers[%d]", path, i))
			if err != nil {
				return nil, err
			}
			// Nested sequences are flattened: sequencePre's buffers are
			// not reentrant, and the result is the same.
			if inner, ok := p.(sequencePre); ok {
				q = append(q, inner...)
			} else if p != nil {
				q = append(q, p)
			}
		}
		return q, nil
	case "Split":
		m, err := buildPattern(c.Pattern)
		if err != nil {
			return nil, fieldErr(path+".pattern", err)
		}
		b, err := parseBehavior(c.Behavior)
		if err != nil {
			return nil, fieldErr(path+".behavior", err)
		}
		return &splitPre{sp: splitter{m: m, behavior: b, invert: c.Invert}}, nil
	case "ByteLevel":
		return &byteLevelPre{addPrefixSpace: deref(c.AddPrefixSpace, true), useRegex: deref(c.UseRegex, true), encode: true}, nil
	case "Metaspace":
		rep := c.Replacement
		if rep == "" {
			rep = "▁"
		}
		if utf8.RuneCountInString(rep) != 1 {
			return nil, fieldErr(path+".replacement", fmt.Errorf("want one character, got %q", rep))
		}
		m := &metaspacePre{replacement: rep, split: deref(c.Split, true)}
		switch c.PrependScheme {
		case "always":
			m.scheme = prependAlways
		case "never":
			m.scheme = prependNever
		case "first":
			m.scheme = prependFirst
		case "":
			// Files older than prepend_scheme carry add_prefix_space.
			if !deref(c.AddPrefixSpace, true) {
				m.scheme = prependNever
			}
		default:
			return nil, fieldErr(path+".prepend_scheme", fmt.Errorf("unknown scheme %q", c.PrependScheme))
		}
		m.sp = splitter{m: literalMatcher{rep}, behavior: splitMergedWithNext}
		return m, nil
	case "Whitespace":
		return &splitPre{sp: wordsSplitter}, nil
	case "WhitespaceSplit":
		return &splitPre{sp: wsRemoved}, nil
	case "BertPreTokenizer":
		return bertPre{}, nil
	case "Punctuation":
		b := splitIsolated
		if c.Behavior != "" {
			var err error
			if b, err = parseBehavior(c.Behavior); err != nil {
				return nil, fieldErr(path+".behavior", err)
			}
		}
		return &splitPre{sp: splitter{m: runeMatcher{isBertPunc}, behavior: b}}, nil
	case "Digits":
		b := splitContiguous
		if c.IndividualDigits {
			b = splitIsolated
		}
		return &splitPre{sp: splitter{m: runeMatcher{isNumber}, behavior: b}}, nil
	case "CharDelimiterSplit":
		if utf8.RuneCountInString(c.Delimiter) != 1 {
			return nil, fieldErr(path+".delimiter", fmt.Errorf("want one character, got %q", c.Delimiter))
		}
		d, _ := utf8.DecodeRuneInString(c.Delimiter)
		return &splitPre{sp: splitter{m: runeMatcher{func(r rune) bool { return r == d }}, behavior: splitRemoved}}, nil
	case "FixedLength":
		n := c.Length
		if n <= 0 {
			n = 5
		}
		return fixedLengthPre{n: n}, nil
	}
	return nil, fieldErr(path+".type", fmt.Errorf("%w: pre-tokenizer %q", ErrUnsupported, c.Type))
}

// lastByteLevel reports whether the pre-tokenizer ends with a ByteLevel step,
// and if so marks that step as not encoding: the BPE model then reads raw
// bytes directly.
func lastByteLevel(p preTokenizer) bool {
	switch v := p.(type) {
	case *byteLevelPre:
		v.encode = false
		return true
	case sequencePre:
		if len(v) > 0 {
			return lastByteLevel(v[len(v)-1])
		}
	}
	return false
}
