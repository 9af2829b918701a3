package tinytok

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func train(t testing.TB, n int) *BPE {
	t.Helper()
	b, err := Train(SampleText, n)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPreTokenize(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"Hello world", []string{"Hello", " world"}},
		{"I'm here's they'll we've you're he'd it't", []string{"I", "'m", " here", "'s", " they", "'ll", " we", "'ve", " you", "'re", " he", "'d", " it", "'t"}},
		{"'sun 'Sun", []string{"'s", "un", " '", "Sun"}},
		{"  two  spaces", []string{" ", " two", " ", " spaces"}},
		{"a\n\nb", []string{"a", "\n", "\n", "b"}},
		{"end  ", []string{"end", "  "}},
		{"tab\tx", []string{"tab", "\t", "x"}},
		{"x = 3.14;", []string{"x", " =", " 3", ".", "14", ";"}},
		{"f(a, b) != 0", []string{"f", "(", "a", ",", " b", ")", " !=", " 0"}},
		{"?'s", []string{"?'", "s"}},
		{"naïve café 123abc", []string{"naïve", " café", " 123", "abc"}},
		{"日本語のテキスト", []string{"日本語のテキスト"}},
		{"🐑🐑 ok", []string{"🐑🐑", " ok"}},
		{"x\u00a0y", []string{"x", "\u00a0", "y"}}, // NBSP is \s
		{"Ⅻ²", []string{"Ⅻ²"}},                     // \p{N} includes Nl and No
		{"\xff\xfeab", []string{"\xff\xfe", "ab"}}, // invalid UTF-8 bytes are kept
		{"", nil},
	}
	for _, c := range cases {
		if got := preTokenize(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("preTokenize(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestByteMap(t *testing.T) {
	seen := map[rune]bool{}
	for b := 0; b < 256; b++ {
		r := byteToRune[b]
		if seen[r] || runeToByte[r] != byte(b) {
			t.Fatalf("byte %d maps to %q, not a bijection", b, r)
		}
		seen[r] = true
	}
	// The characters everyone recognises from GPT-2 vocabularies.
	if byteToRune[' '] != 'Ġ' || byteToRune['\n'] != 'Ċ' || byteToRune['a'] != 'a' || byteToRune[0] != 'Ā' {
		t.Errorf("space→%q newline→%q a→%q NUL→%q", byteToRune[' '], byteToRune['\n'], byteToRune['a'], byteToRune[0])
	}
}

func TestTrainDeterministic(t *testing.T) {
	a, b := train(t, 512), train(t, 512)
	dirA, dirB := t.TempDir(), t.TempDir()
	if err := a.WriteFiles(dirA); err != nil {
		t.Fatal(err)
	}
	if err := b.WriteFiles(dirB); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{TokenizerFile, TokenizerConfigFile} {
		x, _ := os.ReadFile(filepath.Join(dirA, name))
		y, _ := os.ReadFile(filepath.Join(dirB, name))
		if len(x) == 0 || !bytes.Equal(x, y) {
			t.Errorf("%s differs between two trainings on the same text", name)
		}
	}
}

func TestVocabSize(t *testing.T) {
	for _, n := range []int{MinVocabSize, 300, 512, 1024} {
		b := train(t, n)
		if len(b.Vocab) != n {
			t.Errorf("vocab %d: got %d entries", n, len(b.Vocab))
		}
		for i, s := range specialTokens {
			if id, _ := b.TokenID(s); id != n-len(specialTokens)+i {
				t.Errorf("vocab %d: %s has id %d", n, s, id)
			}
		}
		var doc struct {
			AddedTokens []struct {
				ID      int    `json:"id"`
				Content string `json:"content"`
			} `json:"added_tokens"`
			Model struct {
				Vocab  map[string]int `json:"vocab"`
				Merges [][2]string    `json:"merges"`
			} `json:"model"`
		}
		js, _ := b.TokenizerJSON()
		if err := json.Unmarshal(js, &doc); err != nil {
			t.Fatal(err)
		}
		// The model vocabulary holds every id, special tokens included, once.
		ids := map[int]bool{}
		for _, id := range doc.Model.Vocab {
			ids[id] = true
		}
		if len(doc.Model.Vocab) != n || len(ids) != n || len(doc.AddedTokens) != 3 || doc.AddedTokens[0].ID != n-3 {
			t.Errorf("vocab %d: tokenizer.json has %d vocab entries (%d ids), added tokens %+v", n, len(doc.Model.Vocab), len(ids), doc.AddedTokens)
		}
	}
	if _, err := Train(SampleText, 100); err == nil {
		t.Error("vocab 100 accepted")
	}
	if _, err := Train("ab ab", 300); err == nil || !strings.Contains(err.Error(), "supports only") {
		t.Errorf("tiny text: %v", err)
	}
}

func TestMergesInRankOrder(t *testing.T) {
	b := train(t, 1024)
	have := map[string]bool{}
	for i := 0; i < 256; i++ {
		have[b.Vocab[i]] = true
	}
	seen := map[[2]string]bool{}
	next := 256 // the id a token new to the vocabulary gets
	for i, m := range b.Merges {
		if !have[m[0]] || !have[m[1]] {
			t.Fatalf("merge %d %q uses a token no earlier merge produced", i, m)
		}
		if seen[m] {
			t.Fatalf("merge %d %q repeats an earlier one", i, m)
		}
		seen[m] = true
		tok := m[0] + m[1]
		if !have[tok] {
			if b.Vocab[next] != tok {
				t.Fatalf("merge %d makes %q, but id %d is %q", i, tok, next, b.Vocab[next])
			}
			next++
		}
		have[tok] = true
	}
	if next != len(b.Vocab)-len(specialTokens) {
		t.Errorf("merges produced %d tokens, vocabulary has %d", next-256, len(b.Vocab)-len(specialTokens)-256)
	}
}

func TestEveryByteEncodable(t *testing.T) {
	b := train(t, 512)
	for i := 0; i < 256; i++ {
		if got := b.Encode(string([]byte{byte(i)})); !reflect.DeepEqual(got, []int{i}) {
			t.Errorf("byte %#02x encodes to %v", i, got)
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	texts := []string{SampleText, "", "<|begin_of_text|>hi<|end_of_text|><|pad|>", "a<|pad", "\x00\xff\xc3(invalid"}
	for i := 0; i < 200; i++ {
		buf := make([]byte, r.IntN(64))
		for j := range buf {
			buf[j] = byte(r.UintN(256))
		}
		texts = append(texts, string(buf))
	}
	for _, text := range texts {
		ids := b.Encode(text)
		got, err := b.Decode(ids)
		if err != nil || got != text {
			t.Fatalf("Decode(Encode(%q)) = %q, %v", text, got, err)
		}
	}
	// Training pays off: the sample takes far fewer tokens than bytes.
	if n := len(b.Encode(SampleText)); n*10 > len(SampleText)*6 {
		t.Errorf("sample: %d tokens for %d bytes", n, len(SampleText))
	}
	bos, _ := b.TokenID(BeginOfText)
	if got := b.Encode("<|begin_of_text|>Hi"); got[0] != bos || len(got) < 2 {
		t.Errorf("special token in text: %v", got)
	}
}

func TestTokenizerConfig(t *testing.T) {
	b := train(t, 512)
	dir := t.TempDir()
	if err := b.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, TokenizerConfigFile))
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"bos_token": BeginOfText, "eos_token": EndOfText, "pad_token": Pad,
		"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": float64(2048), "chat_template": ChatTemplate,
	}
	for k, v := range want {
		if cfg[k] != v {
			t.Errorf("%s = %v, want %v", k, cfg[k], v)
		}
	}
	if !bytes.Contains(raw, []byte(`"<|pad|>"`)) {
		t.Error("special tokens are HTML-escaped")
	}
	tok, _ := os.ReadFile(filepath.Join(dir, TokenizerFile))
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(tok, &doc); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"version":       `"1.0"`,
		"truncation":    "null",
		"padding":       "null",
		"normalizer":    "null",
		"pre_tokenizer": `{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}`,
		"post_processor": `{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<|begin_of_text|>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],` +
			`"pair":[{"SpecialToken":{"id":"<|begin_of_text|>","type_id":0}},{"Sequence":{"id":"A","type_id":0}},{"SpecialToken":{"id":"<|begin_of_text|>","type_id":1}},{"Sequence":{"id":"B","type_id":1}}],` +
			`"special_tokens":{"<|begin_of_text|>":{"id":"<|begin_of_text|>","ids":[509],"tokens":["<|begin_of_text|>"]}}}`,
	} {
		var got bytes.Buffer
		json.Compact(&got, doc[k])
		if got.String() != want {
			t.Errorf("%s = %s\nwant %s", k, got.String(), want)
		}
	}
	// The key order is the tokenizers library's.
	order := []string{`"version"`, `"truncation"`, `"padding"`, `"added_tokens"`, `"normalizer"`, `"pre_tokenizer"`, `"post_processor"`, `"decoder"`, `"model"`}
	last := -1
	for _, k := range order {
		i := bytes.Index(tok, []byte("\n  "+k+":"))
		if i <= last {
			t.Errorf("key %s out of order", k)
		}
		last = i
	}
	// The vocabulary is written in id order.
	var model struct {
		Vocab json.RawMessage `json:"vocab"`
	}
	json.Unmarshal(doc["model"], &model)
	dec := json.NewDecoder(bytes.NewReader(model.Vocab))
	dec.Token() // {
	for want := 0; dec.More(); want++ {
		key, _ := dec.Token()
		id, _ := dec.Token()
		if id != float64(want) {
			t.Fatalf("vocab entry %d is %q: %v", want, key, id)
		}
	}
}
