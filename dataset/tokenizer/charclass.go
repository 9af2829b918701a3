package tokenizer

import (
	"sync"
	"unicode"
	"unicode/utf8"
)

// Character classes as the Rust library (and Oniguruma inside it) define
// them. Go's unicode tables are Unicode 15.0, the version Oniguruma 6.9.8
// ships; characters added later may classify differently.

// ASCII fast paths: bit 0 letter, 1 number, 2 white space, 3 ASCII punctuation.
var asciiClass [128]uint8

const (
	clsLetter = 1 << iota
	clsNumber
	clsSpace
	clsPunct
)

func init() {
	for c := 0; c < 128; c++ {
		var k uint8
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			k |= clsLetter
		case c >= '0' && c <= '9':
			k |= clsNumber
		case c == ' ' || (c >= '\t' && c <= '\r'):
			k |= clsSpace
		case c > ' ' && c < 0x7F:
			k |= clsPunct
		}
		asciiClass[c] = k
	}
}

// isSpace is Unicode White_Space (Rust char::is_whitespace, Oniguruma \s).
func isSpace(r rune) bool {
	if r < 0x80 {
		return asciiClass[r]&clsSpace != 0
	}
	return unicode.IsSpace(r)
}

// isLetter is general category L (\p{L}).
func isLetter(r rune) bool {
	if r < 0x80 {
		return asciiClass[r]&clsLetter != 0
	}
	return unicode.IsLetter(r)
}

// isNumber is general category N (\p{N}, Rust char::is_numeric).
func isNumber(r rune) bool {
	if r < 0x80 {
		return asciiClass[r]&clsNumber != 0
	}
	return unicode.IsNumber(r)
}

// isRegexWord is the Rust regex crate's Unicode \w (Alphabetic, M, Nd, Pc,
// Join_Control), used by the Whitespace pre-tokenizer and added tokens'
// single_word check. (Oniguruma's \w, used by Split regexes, also counts
// the Latin-1 symbols ² ³ ¹ ¼ ½ ¾: see onigWordClass.)
func isRegexWord(r rune) bool {
	if r < 0x80 {
		return asciiClass[r]&(clsLetter|clsNumber) != 0 || r == '_'
	}
	return unicode.IsLetter(r) || unicode.Is(unicode.Nl, r) || unicode.Is(unicode.Other_Alphabetic, r) ||
		unicode.IsMark(r) || unicode.Is(unicode.Nd, r) || unicode.Is(unicode.Pc, r) || r == 0x200C || r == 0x200D
}

// isBertPunc is the BERT punctuation test: any ASCII punctuation or symbol,
// or a Unicode P* character.
func isBertPunc(r rune) bool {
	if r < 0x80 {
		return asciiClass[r]&clsPunct != 0
	}
	return unicode.IsPunct(r)
}

// isOther is Rust char::is_other: general category C, unassigned included.
// The Basic Multilingual Plane is looked up in a bitmap built on first use.
func isOther(r rune) bool {
	if r < 0x10000 {
		otherOnce.Do(buildOtherBMP)
		return otherBMP[r>>6]&(1<<(r&63)) != 0
	}
	return isOtherSlow(r)
}

var (
	otherOnce sync.Once
	otherBMP  [0x10000 / 64]uint64
)

func buildOtherBMP() {
	for r := rune(0); r < 0x10000; r++ {
		if isOtherSlow(r) {
			otherBMP[r>>6] |= 1 << (r & 63)
		}
	}
}

func isOtherSlow(r rune) bool {
	if unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co, unicode.Cs) {
		return true
	}
	return !unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Z)
}

// appendLower appends Rust's char::to_lowercase(r): the simple mapping
// except U+0130, the one unconditional multi-rune lowercase mapping. Rust
// lowercases char by char, so there is no final-sigma rule.
func appendLower(dst []byte, r rune) []byte {
	if r < 0x80 {
		if r >= 'A' && r <= 'Z' {
			r += 'a' - 'A'
		}
		return append(dst, byte(r))
	}
	if r == 0x130 {
		return append(dst, "i\u0307"...)
	}
	return utf8.AppendRune(dst, unicode.ToLower(r))
}

// decodeRune is utf8.DecodeRuneInString with an ASCII fast path.
func decodeRune(s string, i int) (rune, int) {
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRuneInString(s[i:])
}

// lastRune is utf8.DecodeLastRuneInString with an ASCII fast path.
func lastRune(s string) (rune, int) {
	if c := s[len(s)-1]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeLastRuneInString(s)
}
