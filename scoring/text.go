package scoring

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// The reference implementations of the text metrics are Python programs, so
// their notions of whitespace, word character and lower case are Python's.
// These helpers reproduce them exactly for every code point Go's and Python's
// Unicode tables both know (checked against CPython 3.11 over all of Unicode).

// pyIsSpace is Python's str.isspace for one code point: Go's unicode.IsSpace
// plus the information separators U+001C..U+001F.
func pyIsSpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f)
}

// pyIsWord is a word character of Python's re module on str patterns
// (\w, and so \b): alphanumeric in the sense of str.isalnum, or '_'.
func pyIsWord(r rune) bool {
	return r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r)
}

// pyFields is Python's str.split() with no arguments.
func pyFields(s string) []string {
	return strings.FieldsFunc(s, pyIsSpace)
}

// pyRStrip is Python's str.rstrip() with no arguments.
func pyRStrip(s string) string {
	return strings.TrimRightFunc(s, pyIsSpace)
}

// wordBreakIgnorable are the code points that are Case_Ignorable through their
// Word_Break property (MidLetter, MidNumLet, Single_Quote).
var wordBreakIgnorable = map[rune]bool{
	0x27: true, 0x2E: true, 0x3A: true, 0xB7: true, 0x387: true, 0x55F: true,
	0x5F4: true, 0x2018: true, 0x2019: true, 0x2024: true, 0x2027: true,
	0xFE13: true, 0xFE52: true, 0xFE55: true, 0xFF07: true, 0xFF0E: true, 0xFF1A: true,
}

func caseIgnorable(r rune) bool {
	return wordBreakIgnorable[r] || unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf, unicode.Lm, unicode.Sk)
}

func cased(r rune) bool {
	return unicode.In(r, unicode.Lu, unicode.Ll, unicode.Lt, unicode.Other_Lowercase, unicode.Other_Uppercase)
}

// pyLower is Python's str.lower(): simple lower-casing plus the two rules of
// SpecialCasing that apply without a locale: U+0130 (capital I with dot) becomes
// "i\u0307", and a capital sigma at the end of a word becomes final sigma.
func pyLower(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToLower(s)
	}
	rs := []rune(s)
	var b strings.Builder
	b.Grow(len(s))
	for i, r := range rs {
		switch r {
		case 0x130:
			b.WriteString("i\u0307")
		case 0x3A3:
			if finalSigma(rs, i) {
				b.WriteRune(0x3C2)
			} else {
				b.WriteRune(0x3C3)
			}
		default:
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// finalSigma is CPython's Final_Sigma context test for rs[i]:
// \p{cased} \p{case-ignorable}* U+03A3 !(\p{case-ignorable}* \p{cased}).
func finalSigma(rs []rune, i int) bool {
	j := i - 1
	for j >= 0 && caseIgnorable(rs[j]) {
		j--
	}
	if j < 0 || !cased(rs[j]) {
		return false
	}
	j = i + 1
	for j < len(rs) && caseIgnorable(rs[j]) {
		j++
	}
	return j == len(rs) || !cased(rs[j])
}
