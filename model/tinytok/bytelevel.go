package tinytok

import (
	"unicode"
	"unicode/utf8"
)

// byteToRune is GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for
// themselves, the others (controls, space, soft hyphen...) are shifted to
// U+0100 onwards, so every byte has a visible character and a token string
// never holds whitespace or control characters.
var byteToRune [256]rune

var runeToByte = map[rune]byte{}

func init() {
	n := 0
	for b := 0; b < 256; b++ {
		if b >= '!' && b <= '~' || b >= 0xa1 && b <= 0xac || b >= 0xae {
			byteToRune[b] = rune(b)
		} else {
			byteToRune[b] = rune(256 + n)
			n++
		}
		runeToByte[byteToRune[b]] = byte(b)
	}
}

// preTokenize splits text as the ByteLevel pre-tokenizer's GPT-2 pattern
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// does, by hand because Go's regexp has no lookahead. At each position the
// first alternative that matches wins, each greedy; the pieces cover the
// whole text. It works on byte offsets so that bytes of invalid UTF-8 (each
// an "other" character here) survive into the byte-level tokens.
func preTokenize(text string) []string {
	var rs []rune
	var offs []int
	for i, r := range text {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(text[i:]); n == 1 {
				r = invalidByte
			}
		}
		rs = append(rs, r)
		offs = append(offs, i)
	}
	offs = append(offs, len(text))
	var out []string
	for i := 0; i < len(rs); {
		n := matchAt(rs, i)
		out = append(out, text[offs[i]:offs[i+n]])
		i += n
	}
	return out
}

// invalidByte stands for a byte that is not valid UTF-8: not a letter,
// number or space.
const invalidByte = -1

type class int

const (
	letter class = iota
	number
	space
	other
)

func classOf(r rune) class {
	switch {
	case r == invalidByte:
		return other
	case unicode.IsLetter(r):
		return letter
	case unicode.IsNumber(r):
		return number
	case unicode.IsSpace(r): // Oniguruma's \s: White_Space, the same set
		return space
	}
	return other
}

// matchAt is the length in runes of the match at rs[i].
func matchAt(rs []rune, i int) int {
	if rs[i] == '\'' && i+1 < len(rs) {
		switch rs[i+1] {
		case 's', 't', 'm', 'd':
			return 2
		case 'r', 'v':
			if i+2 < len(rs) && rs[i+2] == 'e' {
				return 3
			}
		case 'l':
			if i+2 < len(rs) && rs[i+2] == 'l' {
				return 3
			}
		}
	}
	// " ?X+" for X in letters, numbers, others: an optional single space.
	start := i
	if rs[i] == ' ' && i+1 < len(rs) && classOf(rs[i+1]) != space {
		start = i + 1
	}
	if c := classOf(rs[start]); c != space {
		j := start + 1
		for j < len(rs) && classOf(rs[j]) == c {
			j++
		}
		return j - i
	}
	// Whitespace: \s+(?!\S) keeps the last space for the next word when one
	// follows; a single space before a word falls through to \s+.
	j := i + 1
	for j < len(rs) && classOf(rs[j]) == space {
		j++
	}
	if j < len(rs) && j-i >= 2 {
		return j - i - 1
	}
	return j - i
}
