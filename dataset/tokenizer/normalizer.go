package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// normalizer rewrites text before pre-tokenization. Offsets are not tracked:
// herd needs ids, not alignments.
type normalizer interface {
	normalize(s string) string
}

type unicodeNormalizer struct{ form norm.Form }

func (n unicodeNormalizer) normalize(s string) string { return n.form.String(s) }

type lowercaseNormalizer struct{}

func (lowercaseNormalizer) normalize(s string) string { return lowercase(s) }

func lowercase(s string) string {
	i := 0
	for i < len(s) && s[i] < utf8.RuneSelf && !(s[i] >= 'A' && s[i] <= 'Z') {
		i++
	}
	if i == len(s) {
		return s
	}
	buf := make([]byte, 0, len(s)+4)
	buf = append(buf, s[:i]...)
	for _, r := range s[i:] {
		buf = appendLower(buf, r)
	}
	return string(buf)
}

type stripNormalizer struct{ left, right bool }

func (n stripNormalizer) normalize(s string) string {
	if n.left {
		s = strings.TrimLeftFunc(s, isSpace)
	}
	if n.right {
		s = strings.TrimRightFunc(s, isSpace)
	}
	return s
}

// stripAccentsNormalizer removes combining marks (general category M: Mn,
// Mc and Me) without decomposing first, as the Rust library's StripAccents
// does. (BertNormalizer's strip_accents differs: NFD, then Mn only.)
type stripAccentsNormalizer struct{}

func (stripAccentsNormalizer) normalize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 0x300 && unicode.IsMark(r) {
			return -1
		}
		return r
	}, s)
}

type replaceNormalizer struct {
	m       matcher
	content string
}

func (n replaceNormalizer) normalize(s string) string { return replaceAll(s, n.m, n.content) }

func replaceAll(s string, m matcher, content string) string {
	if lm, ok := m.(literalMatcher); ok {
		if lm.lit == "" {
			return s
		}
		return strings.ReplaceAll(s, lm.lit, content)
	}
	ms := m.matches(s, nil)
	if len(ms) == 0 {
		return s
	}
	var b strings.Builder
	prev := 0
	for _, sp := range ms {
		b.WriteString(s[prev:sp.start])
		b.WriteString(content)
		prev = sp.end
	}
	b.WriteString(s[prev:])
	return b.String()
}

// prependNormalizer prepends to non-empty text only.
type prependNormalizer struct{ prefix string }

func (n prependNormalizer) normalize(s string) string {
	if s == "" {
		return s
	}
	return n.prefix + s
}

type sequenceNormalizer []normalizer

func (q sequenceNormalizer) normalize(s string) string {
	for _, n := range q {
		s = n.normalize(s)
	}
	return s
}

// bertNormalizer is BertNormalizer: clean control characters and white
// space, pad CJK ideographs with spaces, strip accents, lowercase — in the
// Rust library's order.
type bertNormalizer struct {
	cleanText, chinese, stripAccents, lowercase bool
}

// isChineseChar is the Rust library's CJK test (its ranges, 0x2B920
// included, which differs from the original BERT code's 0x2B820).
func isChineseChar(r rune) bool {
	return (r >= 0x4E00 && r <= 0x9FFF) || (r >= 0x3400 && r <= 0x4DBF) ||
		(r >= 0x20000 && r <= 0x2A6DF) || (r >= 0x2A700 && r <= 0x2B73F) ||
		(r >= 0x2B740 && r <= 0x2B81F) || (r >= 0x2B920 && r <= 0x2CEAF) ||
		(r >= 0xF900 && r <= 0xFAFF) || (r >= 0x2F800 && r <= 0x2FA1F)
}

func (n bertNormalizer) normalize(s string) string {
	// ASCII is handled inline. Runs of non-ASCII text go through the full
	// per-step path: NFD only reorders marks between starters, and ASCII
	// characters are starters, so cutting the text at them is exact.
	out := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x80 {
			j := i + 1
			for j < len(s) && s[j] >= 0x80 {
				j++
			}
			out = append(out, n.normalizeSlow(s[i:j])...)
			i = j
			continue
		}
		i++
		switch {
		case c >= 0x20 && c < 0x7F:
			if n.lowercase && c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
		case !n.cleanText:
		case c == '\t' || c == '\n' || c == '\r':
			c = ' '
		default: // other ASCII controls
			continue
		}
		out = append(out, c)
	}
	return string(out)
}

// normalizeSlow runs the steps in the Rust library's order on non-ASCII text:
// clean, pad CJK, then NFD + remove Mn, then lowercase.
func (n bertNormalizer) normalizeSlow(s string) string {
	buf := make([]byte, 0, len(s)+8)
	for _, r := range s {
		if n.cleanText {
			// Control characters go first: \v, \f and U+0085 are both
			// control and white space, and are dropped.
			switch {
			case r == '\t' || r == '\n' || r == '\r':
				r = ' '
			case r == 0 || r == 0xFFFD || r < 0x20 || isOther(r):
				continue
			case isSpace(r):
				r = ' '
			}
		}
		if n.chinese && isChineseChar(r) {
			buf = append(buf, ' ')
			buf = utf8.AppendRune(buf, r)
			buf = append(buf, ' ')
			continue
		}
		buf = utf8.AppendRune(buf, r)
	}
	if n.stripAccents && !norm.NFD.IsNormal(buf) {
		buf = norm.NFD.Append(nil, buf...)
	}
	if !n.stripAccents && !n.lowercase {
		return string(buf)
	}
	out := make([]byte, 0, len(buf)+4)
	for i := 0; i < len(buf); {
		r, w := utf8.DecodeRune(buf[i:])
		i += w
		if n.stripAccents && r >= 0x300 && unicode.Is(unicode.Mn, r) {
			continue
		}
		if n.lowercase {
			out = appendLower(out, r)
		} else {
			out = utf8.AppendRune(out, r)
		}
	}
	return string(out)
}

// patternJSON is tokenizer.json's {"String": ...} or {"Regex": ...}.
type patternJSON struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

func buildPattern(p patternJSON) (matcher, error) {
	switch {
	case p.String != nil:
		return literalMatcher{lit: *p.String}, nil
	case p.Regex != nil:
		return compileRegex(*p.Regex)
	}
	return nil, fmt.Errorf("pattern has neither String nor Regex")
}

func buildNormalizer(raw json.RawMessage, path string) (normalizer, error) {
	if isNull(raw) {
		return nil, nil
	}
	var c struct {
		Type         string            `json:"type"`
		Normalizers  []json.RawMessage `json:"normalizers"`
		StripLeft    bool              `json:"strip_left"`
		StripRight   bool              `json:"strip_right"`
		Pattern      patternJSON       `json:"pattern"`
		Content      string            `json:"content"`
		Prepend      string            `json:"prepend"`
		CleanText    *bool             `json:"clean_text"`
		Chinese      *bool             `json:"handle_chinese_chars"`
		StripAccents *bool             `json:"strip_accents"`
		Lowercase    *bool             `json:"lowercase"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fieldErr(path, err)
	}
	switch c.Type {
	case "NFC":
		return unicodeNormalizer{norm.NFC}, nil
	case "NFD":
		return unicodeNormalizer{norm.NFD}, nil
	case "NFKC":
		return unicodeNormalizer{norm.NFKC}, nil
	case "NFKD":
		return unicodeNormalizer{norm.NFKD}, nil
	case "Lowercase":
		return lowercaseNormalizer{}, nil
	case "Strip":
		return stripNormalizer{left: c.StripLeft, right: c.StripRight}, nil
	case "StripAccents":
		return stripAccentsNormalizer{}, nil
	case "Replace":
		m, err := buildPattern(c.Pattern)
		if err != nil {
			return nil, fieldErr(path+".pattern", err)
		}
		return replaceNormalizer{m: m, content: c.Content}, nil
	case "Prepend":
		return prependNormalizer{prefix: c.Prepend}, nil
	case "BertNormalizer":
		n := bertNormalizer{cleanText: deref(c.CleanText, true), chinese: deref(c.Chinese, true), lowercase: deref(c.Lowercase, true)}
		n.stripAccents = deref(c.StripAccents, n.lowercase)
		return n, nil
	case "Sequence":
		var q sequenceNormalizer
		for i, r := range c.Normalizers {
			n, err := buildNormalizer(r, fmt.Sprintf("%s.normalizers[%d]", path, i))
			if err != nil {
				return nil, err
			}
			if n != nil {
				q = append(q, n)
			}
		}
		return q, nil
	}
	return nil, fieldErr(path+".type", fmt.Errorf("%w: normalizer %q", ErrUnsupported, c.Type))
}

func deref(p *bool, def bool) bool {
	if p == nil {
		return def
	}
	return *p
}
