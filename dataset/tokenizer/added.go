package tokenizer

import (
	"sort"
	"strings"
	"unicode/utf8"
)

// addedToken is an entry of tokenizer.json's added_tokens.
type addedToken struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized *bool  `json:"normalized"`
	Special    bool   `json:"special"`
}

// isNormalized applies the Rust default: special tokens are not normalized.
func (a addedToken) isNormalized() bool {
	if a.Normalized != nil {
		return *a.Normalized
	}
	return !a.Special
}

// segment is a byte range of text that is either an added token (id >= 0)
// or plain text (id < 0).
type segment struct {
	start, end int
	id         int
}

// addedSet finds added tokens in text with leftmost-longest matching, like
// the Aho-Corasick automaton of the Rust library. Candidate lengths are
// grouped by first byte, so text without those bytes is skipped quickly.
type addedSet struct {
	byContent map[string]int // content → index in toks
	toks      []addedToken
	lens      [256][]int // distinct content lengths by first byte, longest first
}

func newAddedSet(toks []addedToken, contents []string) *addedSet {
	s := &addedSet{byContent: map[string]int{}, toks: toks}
	for i, c := range contents {
		if c == "" {
			continue
		}
		if _, dup := s.byContent[c]; dup {
			continue
		}
		s.byContent[c] = i
		b := c[0]
		if !containsInt(s.lens[b], len(c)) {
			s.lens[b] = append(s.lens[b], len(c))
		}
	}
	for b := range s.lens {
		sort.Sort(sort.Reverse(sort.IntSlice(s.lens[b])))
	}
	return s
}

func containsInt(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func (s *addedSet) empty() bool { return s == nil || len(s.byContent) == 0 }

// longestAt returns the index of the longest token starting at i, or -1.
func (s *addedSet) longestAt(text string, i int) (int, int) {
	for _, l := range s.lens[text[i]] {
		if i+l <= len(text) {
			if k, ok := s.byContent[text[i:i+l]]; ok {
				return k, l
			}
		}
	}
	return -1, 0
}

// split cuts text into added-token and plain segments, appending to dst.
// It applies single_word, lstrip and rstrip as the Rust library does.
func (s *addedSet) split(text string, dst []segment) []segment {
	if s.empty() {
		if text != "" {
			dst = append(dst, segment{0, len(text), -1})
		}
		return dst
	}
	startOffset := 0
	for i := 0; i < len(text); {
		if len(s.lens[text[i]]) == 0 {
			i++
			continue
		}
		k, l := s.longestAt(text, i)
		if k < 0 {
			i++
			continue
		}
		tok := s.toks[k]
		mstart, mend := i, i+l
		i = mend
		if tok.SingleWord {
			startOK := mstart == 0 || !endsWithWord(text[:mstart])
			stopOK := mend == len(text) || !startsWithWord(text[mend:])
			if !startOK || !stopOK {
				continue
			}
		}
		if tok.LStrip {
			ns := len(strings.TrimRightFunc(text[:mstart], isSpace))
			mstart = max(ns, startOffset)
		}
		if tok.RStrip {
			rest := text[mend:]
			mend += len(rest) - len(strings.TrimLeftFunc(rest, isSpace))
			i = mend
		}
		if startOffset < mstart {
			dst = append(dst, segment{startOffset, mstart, -1})
		}
		dst = append(dst, segment{mstart, mend, tok.ID})
		startOffset = mend
	}
	if startOffset < len(text) {
		dst = append(dst, segment{startOffset, len(text), -1})
	}
	return dst
}

func endsWithWord(s string) bool {
	if s == "" {
		return false
	}
	r, _ := utf8.DecodeLastRuneInString(s)
	return isRegexWord(r)
}

func startsWithWord(s string) bool {
	if s == "" {
		return false
	}
	r, _ := utf8.DecodeRuneInString(s)
	return isRegexWord(r)
}

// addedVocab holds the two matching passes of the Rust library: tokens that
// are matched on the raw text (special or normalized=false), and tokens
// matched on normalized text (their contents normalized too).
type addedVocab struct {
	raw        *addedSet
	normalized *addedSet
}

func newAddedVocab(toks []addedToken, n normalizer) *addedVocab {
	var rawToks, normToks []addedToken
	var rawC, normC []string
	for _, t := range toks {
		if t.isNormalized() {
			c := t.Content
			if n != nil {
				c = n.normalize(c)
			}
			normToks = append(normToks, t)
			normC = append(normC, c)
		} else {
			rawToks = append(rawToks, t)
			rawC = append(rawC, t.Content)
		}
	}
	return &addedVocab{raw: newAddedSet(rawToks, rawC), normalized: newAddedSet(normToks, normC)}
}
