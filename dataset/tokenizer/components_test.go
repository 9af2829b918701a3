package tokenizer

import (
	"encoding/json"
	"errors"
	"math/rand"
	"slices"
	"strings"
	"testing"
)

// Expected values follow the Rust library's semantics (its own unit tests
// where it has them).

func TestNormalizers(t *testing.T) {
	for _, tc := range []struct {
		cfg, in, want string
	}{
		{`{"type":"NFC"}`, "e\u0301", "é"},
		{`{"type":"NFD"}`, "é", "e\u0301"},
		{`{"type":"NFKC"}`, "ﬁ①", "fi1"},
		{`{"type":"NFKD"}`, "ﬁé", "fie\u0301"},
		// Per-character lowercasing: İ has a two-rune lowercase, and there is
		// no final-sigma rule.
		{`{"type":"Lowercase"}`, "HELLO İ ΣΑΣ", "hello i\u0307 σασ"},
		{`{"type":"Strip","strip_left":true,"strip_right":true}`, "  \u3000 hi \t", "hi"},
		{`{"type":"Strip","strip_left":true,"strip_right":false}`, "  hi \t", "hi \t"},
		// Every mark is removed (Mn, Mc, Me), and nothing is decomposed first.
		{`{"type":"StripAccents"}`, "e\u0301 é \u0903\u20DD", "e é "},
		// The Rust library's own cases (after NFKD).
		{`{"type":"Sequence","normalizers":[{"type":"NFKD"},{"type":"StripAccents"},{"type":"Lowercase"}]}`, "ำน\u0e49ำ3ลำ", "านา3ลา"},
		{`{"type":"Sequence","normalizers":[{"type":"NFKD"},{"type":"StripAccents"}]}`, "ậ…", "a..."},
		// BertNormalizer strips Mn only, after NFD.
		{`{"type":"BertNormalizer","lowercase":false,"strip_accents":true,"handle_chinese_chars":false}`, "e\u0301\u0903", "e\u0903"},
		{`{"type":"BertNormalizer","lowercase":false}`, "\U0002B820\U0002B920", "\U0002B820 \U0002B920 "},
		{`{"type":"Replace","pattern":{"String":" "},"content":"▁"}`, "a b  c", "a▁b▁▁c"},
		{`{"type":"Replace","pattern":{"Regex":"\\s+"},"content":" "}`, "a \t\n b", "a b"},
		{`{"type":"Prepend","prepend":"▁"}`, "", ""},
		{`{"type":"Prepend","prepend":"▁"}`, "x", "▁x"},
		{`{"type":"Sequence","normalizers":[{"type":"NFKC"},{"type":"Lowercase"}]}`, "ＡＢＣ", "abc"},
		{`{"type":"BertNormalizer"}`, "Héllo\tWORLD\u0000\u200B 你好", "hello world  你  好 "},
		{`{"type":"BertNormalizer","lowercase":false}`, "Héllo", "Héllo"},
		{`{"type":"BertNormalizer","lowercase":false,"strip_accents":true}`, "Héllo", "Hello"},
		{`{"type":"BertNormalizer","clean_text":false,"handle_chinese_chars":false}`, "A\u0000你", "a\u0000你"},
		// \v, \f and U+0085 are control characters before they are spaces.
		{`{"type":"BertNormalizer"}`, "a\u000Bb\u000Cc\u0085d\u00A0e", "abcd e"},
	} {
		n, err := buildNormalizer(json.RawMessage(tc.cfg), "normalizer")
		if err != nil {
			t.Fatalf("%s: %v", tc.cfg, err)
		}
		if got := n.normalize(tc.in); got != tc.want {
			t.Errorf("%s(%q) = %q, want %q", tc.cfg, tc.in, got, tc.want)
		}
	}
}

func preTokenize(t *testing.T, cfg, in string, first bool) []string {
	t.Helper()
	p, err := buildPreTokenizer(json.RawMessage(cfg), "pre_tokenizer")
	if err != nil {
		t.Fatalf("%s: %v", cfg, err)
	}
	var out []string
	for _, q := range p.preTokenize(nil, piece{text: in, first: first}, new(scratch)) {
		out = append(out, q.text)
	}
	return out
}

func TestPreTokenizers(t *testing.T) {
	for _, tc := range []struct {
		cfg, in string
		first   bool
		want    []string
	}{
		{`{"type":"Whitespace"}`, "Hey man!! How are you? ½x Ⅷb", true, []string{"Hey", "man", "!!", "How", "are", "you", "?", "½", "x", "Ⅷb"}},
		{`{"type":"Whitespace"}`, "\n", true, nil},
		{`{"type":"WhitespaceSplit"}`, " Hey\tman!!\u3000you ", true, []string{"Hey", "man!!", "you"}},
		{`{"type":"BertPreTokenizer"}`, "Hey friend!     How are you?!?", true, []string{"Hey", "friend", "!", "How", "are", "you", "?", "!", "?"}},
		{`{"type":"Punctuation"}`, "Hey friend!     How are you?!?", true, []string{"Hey friend", "!", "     How are you", "?", "!", "?"}},
		{`{"type":"Punctuation","behavior":"contiguous"}`, "Hi?!? ok", true, []string{"Hi", "?!?", " ok"}},
		{`{"type":"Digits","individual_digits":false}`, "Hey 123 friend!", true, []string{"Hey ", "123", " friend!"}},
		{`{"type":"Digits","individual_digits":true}`, "Hey 123 friend!", true, []string{"Hey ", "1", "2", "3", " friend!"}},
		{`{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":true}`, "Hey friend!", false, []string{"▁Hey", "▁friend!"}},
		{`{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":true}`, "Hey   friend!", false, []string{"▁Hey", "▁", "▁", "▁friend!"}},
		{`{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":true}`, "Hey friend", true, []string{"▁Hey", "▁friend"}},
		{`{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":true}`, "Hey friend", false, []string{"Hey", "▁friend"}},
		{`{"type":"Metaspace","replacement":"▁","prepend_scheme":"never","split":true}`, "Hey friend", true, []string{"Hey", "▁friend"}},
		{`{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":false}`, "Hey friend", true, []string{"▁Hey▁friend"}},
		{`{"type":"Metaspace","replacement":"▁","add_prefix_space":false}`, "Hey friend", true, []string{"Hey", "▁friend"}},
		{`{"type":"ByteLevel","add_prefix_space":true,"use_regex":true}`, "Hello world", true, []string{"ĠHello", "Ġworld"}},
		{`{"type":"ByteLevel","add_prefix_space":false,"use_regex":true}`, "I'm  ok\n", true, []string{"I", "'m", "Ġ", "Ġok", "Ċ"}},
		{`{"type":"ByteLevel","add_prefix_space":false,"use_regex":false}`, "a b", true, []string{"aĠb"}},
		{`{"type":"CharDelimiterSplit","delimiter":"-"}`, "a-b--c", true, []string{"a", "b", "c"}},
		{`{"type":"Split","pattern":{"Regex":"\\d+"},"behavior":"Removed","invert":false}`, "a12b3", true, []string{"a", "b"}},
		{`{"type":"Split","pattern":{"Regex":"\\d+"},"behavior":"Isolated","invert":false}`, "a12b3", true, []string{"a", "12", "b", "3"}},
		{`{"type":"Split","pattern":{"Regex":"\\d+"},"behavior":"Removed","invert":true}`, "a12b3", true, []string{"12", "3"}},
		{`{"type":"Split","pattern":{"String":" "},"behavior":"MergedWithPrevious","invert":false}`, "a b  c", true, []string{"a ", "b ", " ", "c"}},
		{`{"type":"FixedLength","length":2}`, "abcdé", true, []string{"ab", "cd", "é"}},
		{`{"type":"Sequence","pretokenizers":[{"type":"WhitespaceSplit"},{"type":"Digits","individual_digits":true}]}`, "ab12 c3", true, []string{"ab", "1", "2", "c", "3"}},
		{`{"type":"Sequence","pretokenizers":[{"type":"Sequence","pretokenizers":[{"type":"WhitespaceSplit"}]},{"type":"Punctuation"}]}`, "a,b c", true, []string{"a", ",", "b", "c"}},
	} {
		got := preTokenize(t, tc.cfg, tc.in, tc.first)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s on %q: got %q, want %q", tc.cfg, tc.in, got, tc.want)
		}
	}
}

func TestDecoders(t *testing.T) {
	for _, tc := range []struct {
		cfg  string
		toks []string
		want string
	}{
		{`{"type":"ByteLevel"}`, []string{"Hello", "Ġworld", "âĢĻ"}, "Hello world’"},
		// A lone lead byte becomes U+FFFD; an added token outside the
		// alphabet passes through as its own bytes.
		{`{"type":"ByteLevel"}`, []string{"â", "<|x y|>"}, "\uFFFD<|x y|>"},
		{`{"type":"Metaspace","replacement":"▁","prepend_scheme":"always"}`, []string{"▁Hey", "▁friend!"}, "Hey friend!"},
		{`{"type":"Metaspace","replacement":"▁","prepend_scheme":"never"}`, []string{"▁Hey", "▁friend!"}, " Hey friend!"},
		{`{"type":"ByteFallback"}`, []string{"<0x61>", "b", "<0xE2>", "<0x82>", "<0xAC>", "c", "<0xFF>", "<0xFE>"}, "ab€c\uFFFD\uFFFD"},
		{`{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},{"type":"ByteFallback"},{"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]}`,
			[]string{"▁Hello", "▁wor", "<0x6C>", "d", "▁", "<0xE2>", "<0x82>", "<0xAC>"}, "Hello world €"},
		{`{"type":"Strip","content":" ","start":1,"stop":1}`, []string{" a ", "  b  ", " "}, "a b "},
		{`{"type":"WordPiece","prefix":"##","cleanup":true}`, []string{"hello", "##ing", ",", "world", "!", "it", "'", "s"}, "helloing, world! it ' s"},
		{`{"type":"WordPiece","prefix":"##","cleanup":false}`, []string{"##uelo", "Ara", "##új", "##o", "No", "##guera"}, "##uelo Araújo Noguera"},
		{`{"type":"BPEDecoder","suffix":"</w>"}`, []string{"hel", "lo</w>", "wor", "ld</w>"}, "hello world"},
		{`{"type":"CTC","pad_token":"<pad>","word_delimiter_token":"|","cleanup":true}`, []string{"<pad>", "h", "h", "e", "l", "l", "<pad>", "l", "o", "|", "w"}, "hello w"},
	} {
		d, err := buildDecoder(json.RawMessage(tc.cfg), "decoder")
		if err != nil {
			t.Fatalf("%s: %v", tc.cfg, err)
		}
		if got := strings.Join(d.decodeChain(tc.toks), ""); got != tc.want {
			t.Errorf("%s(%q) = %q, want %q", tc.cfg, tc.toks, got, tc.want)
		}
	}
}

func TestUTF8Lossy(t *testing.T) {
	for in, want := range map[string]string{
		"abc":                "abc",
		"\xE2\x82":           "\uFFFD",             // truncated sequence: one maximal subpart
		"\xE2\x82a":          "\uFFFDa",            //
		"\xF0\x80\x80":       "\uFFFD\uFFFD\uFFFD", // F0 80 is never valid: each byte alone
		"\xED\xA0\x80":       "\uFFFD\uFFFD\uFFFD", // surrogates
		"\xC3":               "\uFFFD",
		"\xFF\xFEok":         "\uFFFD\uFFFDok",
		"\xF4\x8F\xBF\xBF":   "\U0010FFFF",
		"\xF4\x90\x80\x80":   "\uFFFD\uFFFD\uFFFD\uFFFD",
		"a\xE2\x82\xACb\xE2": "a€b\uFFFD",
	} {
		if got := utf8Lossy([]byte(in)); got != want {
			t.Errorf("utf8Lossy(%q) = %q, want %q", in, got, want)
		}
	}
}

func mustParse(t *testing.T, tokenizerJSON, configJSON string) *Tokenizer {
	t.Helper()
	var cfg []byte
	if configJSON != "" {
		cfg = []byte(configJSON)
	}
	tok, err := Parse([]byte(tokenizerJSON), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func encode(t *testing.T, tok *Tokenizer, text string, special bool) []int {
	t.Helper()
	ids, err := tok.Encode(text, special)
	if err != nil {
		t.Fatalf("Encode(%q): %v", text, err)
	}
	return ids
}

// A tiny character-level BPE: merges "a b" (rank 0) then "ab c" (rank 1)
// then "b c" (rank 2).
const tinyBPE = `{"type":"BPE","vocab":{"a":0,"b":1,"c":2,"ab":3,"abc":4,"bc":5,"<unk>":6,"<0x7A>":7},
 "merges":MERGES,"unk_token":"<unk>","byte_fallback":BF,"fuse_unk":FUSE}`

func bpeTokenizer(t *testing.T, merges string, byteFallback, fuse bool) *Tokenizer {
	m := strings.NewReplacer("MERGES", merges, "BF", boolStr(byteFallback), "FUSE", boolStr(fuse)).Replace(tinyBPE)
	return mustParse(t, `{"model":`+m+`}`, "")
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func TestBPE(t *testing.T) {
	legacy := bpeTokenizer(t, `["a b","ab c","b c"]`, false, false)
	pairs := bpeTokenizer(t, `[["a","b"],["ab","c"],["b","c"]]`, false, false)
	for in, want := range map[string][]int{
		"abc":  {4},
		"bc":   {5},
		"abbc": {3, 5},
		"cab":  {2, 3},
		"a":    {0},
		"":     {},
		"axb":  {0, 6, 1}, // x is unknown
		"axyb": {0, 6, 6, 1},
	} {
		for _, tok := range []*Tokenizer{legacy, pairs} {
			if got := encode(t, tok, in, false); !slices.Equal(nilToEmpty(got), want) {
				t.Errorf("%q: got %v, want %v", in, got, want)
			}
		}
	}
	fused := bpeTokenizer(t, `["a b"]`, false, true)
	if got := encode(t, fused, "axyb", false); !slices.Equal(got, []int{0, 6, 1}) {
		t.Errorf("fuse_unk: got %v", got)
	}
	// Byte fallback: z has a byte token; y does not, so it becomes unk.
	fb := bpeTokenizer(t, `["a b"]`, true, false)
	if got := encode(t, fb, "azyb", false); !slices.Equal(got, []int{0, 7, 6, 1}) {
		t.Errorf("byte_fallback: got %v", got)
	}
	if got, _ := fb.Decode([]int{3, 5, 6}, false); got != "ab bc <unk>" {
		t.Errorf("decode without a decoder joins with spaces: %q", got)
	}
}

func TestBPEPrefixSuffixAndIgnoreMerges(t *testing.T) {
	tok := mustParse(t, `{"pre_tokenizer":{"type":"WhitespaceSplit"},"model":{"type":"BPE",
		"vocab":{"a":0,"##b":1,"##c</w>":2,"a##b":3,"ab":4,"ab##c</w>":5,"abc</w>":6,"b":7,"c</w>":8,"xyz":9},
		"merges":["a ##b","ab ##c</w>"],"continuing_subword_prefix":"##","end_of_word_suffix":"</w>","ignore_merges":true}}`, "")
	// The merged token drops the prefix of its right part: a + ##b = ab.
	// ignore_merges looks words up as they are, without prefix or suffix.
	if got := encode(t, tok, "abc b xyz", false); !slices.Equal(got, []int{6, 7, 9}) {
		t.Errorf("got %v, want [6 7 9]", got)
	}
}

// Both merge strategies must equal the definition: repeatedly merge the
// lowest-ranked adjacent pair, leftmost first.
func TestBPEMergeStrategies(t *testing.T) {
	tok := bpeTokenizer(t, `["a b","ab c","b c"]`, false, false)
	m := tok.model.(*bpeModel)
	reference := func(ids []int32) []int32 {
		for {
			best, bestRank := -1, uint64(noMerge)
			for i := 0; i+1 < len(ids); i++ {
				if v := m.lookupMerge(ids[i], ids[i+1]); v>>32 < bestRank>>32 || (best < 0 && v != noMerge) {
					best, bestRank = i, v
				}
			}
			if best < 0 {
				return ids
			}
			ids = append(ids[:best], append([]int32{int32(uint32(bestRank))}, ids[best+2:]...)...)
		}
	}
	rng := rand.New(rand.NewSource(7))
	for n := 1; n < 300; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = "abc"[rng.Intn(3)]
		}
		ids, err := m.initialSymbols(string(b), nil)
		if err != nil {
			t.Fatal(err)
		}
		want := reference(slices.Clone(ids))
		if got := m.mergeHeap(slices.Clone(ids)); !slices.Equal(got, want) {
			t.Fatalf("%s: heap %v, want %v", b, got, want)
		}
		if n < heapThreshold {
			if got := m.mergeScan(slices.Clone(ids)); !slices.Equal(got, want) {
				t.Fatalf("%s: scan %v, want %v", b, got, want)
			}
		}
		if got := encode(t, tok, string(b), false); len(got) != len(want) {
			t.Fatalf("%s: Encode gave %d ids, want %d", b, len(got), len(want))
		}
	}
}

func TestWordPiece(t *testing.T) {
	tok := mustParse(t, `{"normalizer":{"type":"BertNormalizer"},"pre_tokenizer":{"type":"BertPreTokenizer"},
		"model":{"type":"WordPiece","unk_token":"[UNK]","continuing_subword_prefix":"##","max_input_chars_per_word":10,
		"vocab":{"[UNK]":0,"un":1,"##aff":2,"##able":3,"play":4,"##ing":5,"!":6,"[CLS]":7,"[SEP]":8}},
		"post_processor":{"type":"BertProcessing","sep":["[SEP]",8],"cls":["[CLS]",7]},
		"decoder":{"type":"WordPiece","prefix":"##","cleanup":true},
		"added_tokens":[{"id":7,"content":"[CLS]","special":true},{"id":8,"content":"[SEP]","special":true}]}`, "")
	for in, want := range map[string][]int{
		"Unaffable playing!": {1, 2, 3, 4, 5, 6},
		"unaffablex":         {0},
		"playingplaying":     {0}, // over max_input_chars_per_word
		"[CLS] play":         {7, 4},
	} {
		if got := encode(t, tok, in, false); !slices.Equal(got, want) {
			t.Errorf("%q: got %v, want %v", in, got, want)
		}
	}
	if got := encode(t, tok, "play", true); !slices.Equal(got, []int{7, 4, 8}) {
		t.Errorf("with special tokens: %v", got)
	}
	if got, _ := tok.Decode([]int{7, 1, 2, 3, 4, 5, 6, 8}, true); got != "unaffable playing!" {
		t.Errorf("decode: %q", got)
	}
	sp := tok.Special()
	if sp.BOS != 7 || sp.EOS != 8 || sp.UNK != 0 || sp.PAD != -1 || sp.BOSToken != "[CLS]" {
		t.Errorf("special tokens from tokenizer.json: %+v", sp)
	}
}

func TestAddedTokens(t *testing.T) {
	tok := mustParse(t, `{"normalizer":{"type":"Lowercase"},"pre_tokenizer":{"type":"WhitespaceSplit"},
		"model":{"type":"WordLevel","unk_token":"[UNK]","vocab":{"hello":0,"world":1,"[UNK]":2,"xtok":3}},
		"added_tokens":[
		 {"id":10,"content":"<mask>","lstrip":true,"rstrip":true,"normalized":false,"special":true},
		 {"id":11,"content":"Tok","single_word":true,"normalized":true,"special":false},
		 {"id":12,"content":"<s>","special":true},
		 {"id":13,"content":"<s>x","special":true}]}`, "")
	for in, want := range map[string][]int{
		"hello <mask> world": {0, 10, 1},
		"hello  <mask>world": {0, 10, 1},
		"TOK hello":          {11, 0},        // matched after normalization
		"xtok hello":         {3, 0},         // single_word: not inside a word
		"hello tok":          {0, 11},        //
		"<s>x<s>y <S>":       {13, 12, 2, 2}, // longest match first; special tokens are not normalized
		"hello<mask><mask>":  {0, 10, 10},
	} {
		if got := encode(t, tok, in, false); !slices.Equal(got, want) {
			t.Errorf("%q: got %v, want %v", in, got, want)
		}
	}
	if got, _ := tok.Decode([]int{0, 10, 11, 1}, true); got != "hello Tok world" {
		t.Errorf("skip special: %q", got)
	}
	if got, _ := tok.Decode([]int{0, 10, 99, -1}, false); got != "hello <mask>" {
		t.Errorf("unknown ids are skipped: %q", got)
	}
	if id, ok := tok.TokenToID("<mask>"); !ok || id != 10 {
		t.Errorf("TokenToID(<mask>) = %d, %v", id, ok)
	}
	if s, ok := tok.IDToToken(1); !ok || s != "world" {
		t.Errorf("IDToToken(1) = %q, %v", s, ok)
	}
	if _, ok := tok.IDToToken(5); ok {
		t.Error("IDToToken of a hole in the id space")
	}
	if tok.VocabSize() != 14 {
		t.Errorf("VocabSize = %d, want 14", tok.VocabSize())
	}
}

func TestPostProcessors(t *testing.T) {
	model := `"model":{"type":"WordLevel","unk_token":"u","vocab":{"u":0,"a":1}},"pre_tokenizer":{"type":"WhitespaceSplit"}`
	for _, tc := range []struct {
		post string
		want []int
	}{
		{`{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}},{"SpecialToken":{"id":"</s>","type_id":0}}],
		  "special_tokens":{"<s>":{"id":"<s>","ids":[5,6],"tokens":["<","s>"]},"</s>":{"id":"</s>","ids":[7],"tokens":["</s>"]}}}`, []int{5, 6, 1, 1, 7}},
		{`{"type":"BertProcessing","sep":["[SEP]",102],"cls":["[CLS]",101]}`, []int{101, 1, 1, 102}},
		{`{"type":"RobertaProcessing","sep":["</s>",2],"cls":["<s>",0],"trim_offsets":true,"add_prefix_space":true}`, []int{0, 1, 1, 2}},
		{`{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":false,"use_regex":true}`, []int{1, 1}},
		{`{"type":"Sequence","processors":[{"type":"ByteLevel"},{"type":"BertProcessing","sep":["[SEP]",9],"cls":["[CLS]",8]}]}`, []int{8, 1, 1, 9}},
	} {
		tok := mustParse(t, `{`+model+`,"post_processor":`+tc.post+`}`, "")
		if got := encode(t, tok, "a a", true); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.post, got, tc.want)
		}
		if got := encode(t, tok, "a a", false); !slices.Equal(got, []int{1, 1}) {
			t.Errorf("%s without special tokens: got %v", tc.post, got)
		}
	}
}

func TestSpecialTokensFromConfig(t *testing.T) {
	tj := `{"model":{"type":"WordLevel","unk_token":"<unk>","vocab":{"<unk>":0,"<s>":1,"</s>":2,"<pad>":3}}}`
	tok := mustParse(t, tj, `{"bos_token":{"__type":"AddedToken","content":"<s>"},"eos_token":"</s>","pad_token":null,"unk_token":"<unk>"}`)
	want := SpecialTokens{BOS: 1, EOS: 2, PAD: -1, UNK: 0, BOSToken: "<s>", EOSToken: "</s>", UNKToken: "<unk>"}
	if got := tok.Special(); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	tok = mustParse(t, tj, `{"eos_token":"<missing>"}`)
	if sp := tok.Special(); sp.EOS != -1 || sp.EOSToken != "<missing>" || sp.BOS != -1 || sp.UNK != 0 {
		t.Errorf("got %+v", sp)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		json, want  string
		unsupported bool
	}{
		{`{"model":{"type":"BPE","vocab":{"a":0,"b":1},"merges":["a b"]}}`, `tokenizer.json: model.merges[0]: merged token "ab" is not in the vocabulary`, false},
		{`{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b","a b c"]}}`, `tokenizer.json: model.merges[1]: want "a b"`, false},
		{`{"model":{"type":"BPE","vocab":{"a":0},"merges":[],"dropout":0.1}}`, `tokenizer.json: model.dropout`, true},
		{`{"model":{"type":"Nope"}}`, `tokenizer.json: model.type`, true},
		{`{"normalizer":{"type":"Precompiled"},"model":{"type":"WordLevel","vocab":{}}}`, `tokenizer.json: normalizer.type`, true},
		{`{"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"("},"behavior":"Isolated"}]},"model":{"type":"WordLevel","vocab":{}}}`, `tokenizer.json: pre_tokenizer.pretokenizers[0].pattern`, false},
		{`{"decoder":{"type":"Strip","content":"ab"},"model":{"type":"WordLevel","vocab":{}}}`, `tokenizer.json: decoder.content`, false},
		{`{"model":null}`, `tokenizer.json: model: missing`, false},
		{`not json`, `tokenizer.json:`, false},
	} {
		_, err := Parse([]byte(tc.json), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.json, err, tc.want)
		}
		if err != nil && errors.Is(err, ErrUnsupported) != tc.unsupported {
			t.Errorf("%s: errors.Is(ErrUnsupported) = %v", tc.json, !tc.unsupported)
		}
	}
	if _, err := Parse([]byte(`{"model":{"type":"WordLevel","vocab":{}}}`), []byte(`{"chat_template":7}`)); err == nil ||
		!strings.Contains(err.Error(), "tokenizer_config.json: chat_template") {
		t.Errorf("bad chat_template: %v", err)
	}
}

func TestEncodeErrors(t *testing.T) {
	// The unk token is named but missing from the vocabulary.
	tok := mustParse(t, `{"model":{"type":"BPE","vocab":{"a":0},"merges":[],"unk_token":"<unk>"}}`, "")
	if _, err := tok.Encode("ab", false); !errors.Is(err, ErrEncode) {
		t.Errorf("got %v, want ErrEncode", err)
	}
	// Invalid UTF-8 is replaced, not rejected.
	tok = mustParse(t, `{"model":{"type":"BPE","vocab":{"a":0,"\uFFFD":1},"merges":[]}}`, "")
	if got := encode(t, tok, "a\xffa", false); !slices.Equal(got, []int{0, 1, 0}) {
		t.Errorf("invalid UTF-8: %v", got)
	}
}

// Merging word by word at "▁" must equal merging the whole text, when no
// token holds "▁" after other text.
func TestBPEWordSeparator(t *testing.T) {
	tj := `{"model":{"type":"BPE","unk_token":"<unk>","fuse_unk":true,
		"vocab":{"▁":0,"a":1,"b":2,"▁a":3,"▁▁":4,"ab":5,"▁ab":6,"<unk>":7,"▁▁a":8EXTRA},
		"merges":["▁ a","a b","▁ ▁","▁a b","▁▁ a"MERGE]}}`
	tok := mustParse(t, strings.NewReplacer("EXTRA", "", "MERGE", "").Replace(tj), "")
	m := tok.model.(*bpeModel)
	if m.wordSep != "▁" {
		t.Fatal("separator not detected")
	}
	rng := rand.New(rand.NewSource(3))
	sc := new(scratch)
	for i := 0; i < 2000; i++ {
		var b strings.Builder
		for k := rng.Intn(40); k >= 0; k-- {
			b.WriteString([]string{"▁", "a", "b", "c", "▁▁"}[rng.Intn(5)])
		}
		whole, err1 := m.tokenizeWord(b.String(), nil, sc)
		split, err2 := m.tokenize(b.String(), nil, sc)
		if err1 != nil || err2 != nil || !slices.Equal(whole, split) {
			t.Fatalf("%q: whole %v, by word %v", b.String(), whole, split)
		}
	}
	// A token with "▁" inside turns the shortcut off.
	tok = mustParse(t, strings.NewReplacer("EXTRA", `,"a▁":9`, "MERGE", `,"a ▁"`).Replace(tj), "")
	if tok.model.(*bpeModel).wordSep != "" {
		t.Error("separator kept although a token holds it inside")
	}
}
