package tokenizer

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// FuzzMatchers checks the hand-written pre-tokenizer matchers against a
// backtracking regex engine running the patterns they replace.
func FuzzMatchers(f *testing.F) {
	for _, s := range []string{"", "Hello world", "I'm  ok\n\n", " 12345 x", "\t'LL\r\n ", "a\u00A0\u3000b", "ſ's"} {
		f.Add(s)
	}
	type pair struct {
		fast matcher
		re   regexMatcher
	}
	pairs := []pair{
		{gpt2Matcher{}, regexMatcher{regexp2.MustCompile(onigToRegexp2(gpt2Pattern), regexp2.Multiline)}},
		{llamaMatcher{3}, regexMatcher{regexp2.MustCompile(onigToRegexp2(llama3Pattern), regexp2.Multiline)}},
		{llamaMatcher{1}, regexMatcher{regexp2.MustCompile(onigToRegexp2(qwen2Pattern), regexp2.Multiline)}},
		{searchMatcher{deepseekMatchAt}, regexMatcher{regexp2.MustCompile(onigToRegexp2(deepseekPattern), regexp2.Multiline)}},
		{searchMatcher{o200kMatchAt}, regexMatcher{regexp2.MustCompile(onigToRegexp2(o200kPattern), regexp2.Multiline)}},
		{numberMatcher{3}, regexMatcher{regexp2.MustCompile(onigToRegexp2(numbers3Pattern), regexp2.Multiline)}},
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) || strings.ContainsRune(s, 0x17F) {
			// Encode makes text valid first; regexp2 does not fold ſ to s
			// as Oniguruma does.
			return
		}
		for _, p := range pairs {
			if got, want := p.fast.matches(s, nil), p.re.matches(s, nil); !slices.Equal(got, want) {
				t.Fatalf("%T on %q: %v, regex %v", p.fast, s, got, want)
			}
		}
	})
}

// byteLevelJSON is a byte-level BPE over the full byte alphabet with a few
// merges: every input must round-trip.
func byteLevelJSON() string {
	vocab := map[string]int{}
	for b := 0; b < 256; b++ {
		vocab[byteToAlpha[b]] = b
	}
	merges := []string{"Ġ t", "h e", "Ġt he", "Ġ a", "i n", "e r"}
	for i, m := range merges {
		a, b, _ := strings.Cut(m, " ")
		vocab[a+b] = 256 + i
	}
	v, _ := json.Marshal(vocab)
	mg, _ := json.Marshal(merges)
	return `{"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"use_regex":true},
	 "model":{"type":"BPE","vocab":` + string(v) + `,"merges":` + string(mg) + `},
	 "decoder":{"type":"ByteLevel"},
	 "added_tokens":[{"id":300,"content":"<|x|>","special":true}]}`
}

func FuzzByteLevelRoundTrip(f *testing.F) {
	tok, err := Parse([]byte(byteLevelJSON()), nil)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"", "the theater", "<|x|>in<|x|>", "😀 ß\r\n", "\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ids, err := tok.Encode(s, true)
		if err != nil {
			t.Fatal(err)
		}
		got, err := tok.Decode(ids, false)
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.ToValidUTF8(s, "\uFFFD"); got != want {
			t.Fatalf("round trip of %q gave %q", s, got)
		}
	})
}

func FuzzTokenizeJSONL(f *testing.F) {
	tok, err := Parse([]byte(byteLevelJSON()), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("{\"text\":\"hi\"}\n{\"text\":\"\"}\n"))
	f.Add([]byte("{\"text\":1}"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		err := TokenizeJSONL(bytes.NewReader(in), &out, tok, false)
		lines := bytes.Count(out.Bytes(), []byte("\n"))
		if err == nil && lines != bytes.Count(in, []byte("\n"))+boolInt(len(in) > 0 && in[len(in)-1] != '\n') {
			t.Fatalf("%d output lines for %q", lines, in)
		}
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
