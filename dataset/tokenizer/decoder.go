package tokenizer

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// decoder turns tokens back into text pieces; the pieces are concatenated at
// the end, as the Rust library's Decoder::decode does.
type decoder interface {
	decodeChain(toks []string) []string
}

// byteLevelDecoder maps byte-level alphabet characters back to bytes. A
// token with a character outside the alphabet (an added token, say) is
// taken as its own UTF-8 bytes.
type byteLevelDecoder struct{}

func (byteLevelDecoder) decodeChain(toks []string) []string {
	var buf []byte
	for _, t := range toks {
		start := len(buf)
		ok := true
		for _, r := range t {
			b, found := runeToByteFast(r)
			if !found {
				ok = false
				break
			}
			buf = append(buf, b)
		}
		if !ok {
			buf = append(buf[:start], t...)
		}
	}
	return []string{utf8Lossy(buf)}
}

func runeToByteFast(r rune) (byte, bool) {
	if r < 0x100 && byteToRune[r] == r {
		return byte(r), true
	}
	if r >= 0x100 && r < 0x100+68 {
		b, ok := runeToByte[r]
		return b, ok
	}
	return 0, false
}

type metaspaceDecoder struct {
	replacement rune
	prepend     bool // prepend_scheme != never
}

func (m metaspaceDecoder) decodeChain(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		var b strings.Builder
		for _, r := range t {
			if r == m.replacement {
				if i == 0 && m.prepend {
					continue
				}
				b.WriteByte(' ')
			} else {
				b.WriteRune(r)
			}
		}
		out[i] = b.String()
	}
	return out
}

// byteFallbackDecoder joins runs of <0xXX> tokens into text; an invalid
// UTF-8 run becomes one U+FFFD per byte, as in the Rust library.
type byteFallbackDecoder struct{}

func parseByteToken(t string) (byte, bool) {
	if len(t) != 6 || !strings.HasPrefix(t, "<0x") || t[5] != '>' {
		return 0, false
	}
	v, err := strconv.ParseUint(t[3:5], 16, 8)
	if err != nil {
		return 0, false
	}
	return byte(v), true
}

func (byteFallbackDecoder) decodeChain(toks []string) []string {
	out := make([]string, 0, len(toks))
	var pending []byte
	flush := func() {
		if len(pending) == 0 {
			return
		}
		if utf8.Valid(pending) {
			out = append(out, string(pending))
		} else {
			for range pending {
				out = append(out, "\uFFFD")
			}
		}
		pending = pending[:0]
	}
	for _, t := range toks {
		if b, ok := parseByteToken(t); ok {
			pending = append(pending, b)
			continue
		}
		flush()
		out = append(out, t)
	}
	flush()
	return out
}

type fuseDecoder struct{}

func (fuseDecoder) decodeChain(toks []string) []string { return []string{strings.Join(toks, "")} }

type stripDecoder struct {
	content     rune
	start, stop int
}

func (s stripDecoder) decodeChain(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		rs := []rune(t)
		startCut := 0
		for k := 0; k < s.start && k < len(rs); k++ {
			if rs[k] != s.content {
				break
			}
			startCut = k + 1
		}
		stopCut := len(rs)
		for k := 0; k < s.stop && k < len(rs); k++ {
			idx := len(rs) - k - 1
			if rs[idx] != s.content {
				break
			}
			stopCut = idx
		}
		if stopCut < startCut {
			stopCut = startCut
		}
		out[i] = string(rs[startCut:stopCut])
	}
	return out
}

type replaceDecoder struct {
	m       matcher
	content string
}

func (r replaceDecoder) decodeChain(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		out[i] = replaceAll(t, r.m, r.content)
	}
	return out
}

type wordPieceDecoder struct {
	prefix  string
	cleanup bool
}

// cleanup is the Rust library's WordPiece cleanup of spaces before
// punctuation and contractions.
func cleanup(s string) string {
	for _, p := range [][2]string{
		{" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
		{" n't", "n't"}, {" 'm", "'m"}, {" do not", " don't"}, {" 's", "'s"},
		{" 've", "'ve"}, {" 're", "'re"},
	} {
		s = strings.ReplaceAll(s, p[0], p[1])
	}
	return s
}

func (w wordPieceDecoder) decodeChain(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		if i != 0 {
			if strings.HasPrefix(t, w.prefix) {
				t = strings.Replace(t, w.prefix, "", 1)
			} else {
				t = " " + t
			}
		}
		if w.cleanup {
			t = cleanup(t)
		}
		out[i] = t
	}
	return out
}

// bpeDecoder replaces the end-of-word suffix with a space (none at the end).
type bpeDecoder struct{ suffix string }

func (b bpeDecoder) decodeChain(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		rep := " "
		if i == len(toks)-1 {
			rep = ""
		}
		out[i] = strings.ReplaceAll(t, b.suffix, rep)
	}
	return out
}

// ctcDecoder collapses repeats, removes the pad token and, with cleanup,
// turns the word delimiter into spaces; empty results are dropped.
type ctcDecoder struct {
	pad, delim string
	cleanup    bool
}

func (c ctcDecoder) decodeChain(toks []string) []string {
	var out []string
	for i, t := range toks {
		if i > 0 && t == toks[i-1] {
			continue
		}
		t = strings.ReplaceAll(t, c.pad, "")
		if c.cleanup {
			t = strings.ReplaceAll(cleanup(t), c.delim, " ")
		}
		if t != "" {
			out = append(out, t)
		}
	}
	return out
}

type sequenceDecoder []decoder

func (q sequenceDecoder) decodeChain(toks []string) []string {
	for _, d := range q {
		toks = d.decodeChain(toks)
	}
	return toks
}

func buildDecoder(raw json.RawMessage, path string) (decoder, error) {
	if isNull(raw) {
		return nil, nil
	}
	var c struct {
		Type           string            `json:"type"`
		Decoders       []json.RawMessage `json:"decoders"`
		Replacement    string            `json:"replacement"`
		PrependScheme  string            `json:"prepend_scheme"`
		AddPrefixSpace *bool             `json:"add_prefix_space"`
		Content        json.RawMessage   `json:"content"`
		Start          int               `json:"start"`
		Stop           int               `json:"stop"`
		Pattern        patternJSON       `json:"pattern"`
		Prefix         *string           `json:"prefix"`
		Cleanup        *bool             `json:"cleanup"`
		Suffix         *string           `json:"suffix"`
		PadToken       *string           `json:"pad_token"`
		WordDelimiter  *string           `json:"word_delimiter_token"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fieldErr(path, err)
	}
	switch c.Type {
	case "ByteLevel":
		return byteLevelDecoder{}, nil
	case "Metaspace":
		rep := c.Replacement
		if rep == "" {
			rep = "▁"
		}
		r, _ := utf8.DecodeRuneInString(rep)
		prepend := c.PrependScheme != "never"
		if c.PrependScheme == "" {
			prepend = deref(c.AddPrefixSpace, true)
		}
		return metaspaceDecoder{replacement: r, prepend: prepend}, nil
	case "ByteFallback":
		return byteFallbackDecoder{}, nil
	case "Fuse":
		return fuseDecoder{}, nil
	case "Strip":
		var content string
		if err := json.Unmarshal(c.Content, &content); err != nil || utf8.RuneCountInString(content) != 1 {
			return nil, fieldErr(path+".content", fmt.Errorf("want one character, got %s", c.Content))
		}
		r, _ := utf8.DecodeRuneInString(content)
		return stripDecoder{content: r, start: c.Start, stop: c.Stop}, nil
	case "Replace":
		var content string
		if err := json.Unmarshal(c.Content, &content); err != nil {
			return nil, fieldErr(path+".content", err)
		}
		m, err := buildPattern(c.Pattern)
		if err != nil {
			return nil, fieldErr(path+".pattern", err)
		}
		return replaceDecoder{m: m, content: content}, nil
	case "WordPiece":
		w := wordPieceDecoder{prefix: "##", cleanup: deref(c.Cleanup, true)}
		if c.Prefix != nil {
			w.prefix = *c.Prefix
		}
		return w, nil
	case "BPEDecoder":
		b := bpeDecoder{suffix: "</w>"}
		if c.Suffix != nil {
			b.suffix = *c.Suffix
		}
		return b, nil
	case "CTC":
		d := ctcDecoder{pad: "<pad>", delim: "|", cleanup: deref(c.Cleanup, true)}
		if c.PadToken != nil {
			d.pad = *c.PadToken
		}
		if c.WordDelimiter != nil {
			d.delim = *c.WordDelimiter
		}
		return d, nil
	case "Sequence":
		var q sequenceDecoder
		for i, r := range c.Decoders {
			d, err := buildDecoder(r, fmt.Sprintf("%s.decoders[%d]", path, i))
			if err != nil {
				return nil, err
			}
			if d != nil {
				q = append(q, d)
			}
		}
		return q, nil
	}
	return nil, fieldErr(path+".type", fmt.Errorf("%w: decoder %q", ErrUnsupported, c.Type))
}
