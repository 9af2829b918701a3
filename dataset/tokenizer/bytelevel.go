package tokenizer

import (
	"unicode/utf8"
)

// The GPT-2 byte-level alphabet maps every byte to a printable rune so that
// BPE vocabularies can be stored as text: printable Latin-1 bytes map to
// themselves, the others to U+0100 upwards, in byte order.
var (
	byteToRune [256]rune
	runeToByte = map[rune]byte{}
	// byteToAlpha holds the UTF-8 encoding of byteToRune, to build strings
	// without re-encoding.
	byteToAlpha [256]string
)

func init() {
	n := 0
	for b := 0; b < 256; b++ {
		printable := (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
		if printable {
			byteToRune[b] = rune(b)
		} else {
			byteToRune[b] = rune(256 + n)
			n++
		}
		runeToByte[byteToRune[b]] = byte(b)
		byteToAlpha[b] = string(byteToRune[b])
	}
}

// toByteAlphabet maps the bytes of s to the byte-level alphabet.
func toByteAlphabet(s string) string {
	buf := make([]byte, 0, 2*len(s))
	for i := 0; i < len(s); i++ {
		buf = utf8.AppendRune(buf, byteToRune[s[i]])
	}
	return string(buf)
}

// fromByteAlphabet maps a byte-level string back to its bytes; ok is false
// when s holds a rune outside the alphabet.
func fromByteAlphabet(s string) (string, bool) {
	buf := make([]byte, 0, len(s))
	for _, r := range s {
		b, ok := runeToByte[r]
		if !ok {
			return "", false
		}
		buf = append(buf, b)
	}
	return string(buf), true
}

// utf8Lossy converts b to a string as Rust's String::from_utf8_lossy does:
// each maximal ill-formed subsequence becomes one U+FFFD. Go's own
// conversions differ (one U+FFFD per byte, or per run), and decoded text must
// match the Rust library byte for byte.
func utf8Lossy(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	out := make([]byte, 0, len(b)+8)
	for i := 0; i < len(b); {
		c := b[i]
		if c < 0x80 {
			out = append(out, c)
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r != utf8.RuneError || size > 1 {
			out = append(out, b[i:i+size]...)
			i += size
			continue
		}
		out = append(out, "\uFFFD"...)
		i += maximalSubpart(b[i:])
	}
	return string(out)
}

// maximalSubpart returns the length (at least 1) of the maximal prefix of b
// that could start a well-formed UTF-8 sequence, per Unicode §3.9 (the
// "substitution of maximal subparts" practice).
func maximalSubpart(b []byte) int {
	c := b[0]
	var need int
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
		need = 2
	case c == 0xED:
		need, hi = 2, 0x9F
	case c == 0xF0:
		need, lo = 3, 0x90
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	case c == 0xF4:
		need, hi = 3, 0x8F
	default:
		return 1
	}
	n := 1
	for k := 0; k < need && n < len(b); k++ {
		x := b[n]
		if k == 0 {
			if x < lo || x > hi {
				return n
			}
		} else if x < 0x80 || x > 0xBF {
			return n
		}
		n++
	}
	return n
}
