package tokenizer

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const wordLevelJSON = `{"pre_tokenizer":{"type":"WhitespaceSplit"},
 "model":{"type":"WordLevel","unk_token":"<unk>","vocab":{"<unk>":0,"hello":1,"world":2,"<s>":3}},
 "post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],
   "special_tokens":{"<s>":{"id":"<s>","ids":[3],"tokens":["<s>"]}}},
 "added_tokens":[{"id":3,"content":"<s>","special":true}]}`

func TestTokenizeJSONL(t *testing.T) {
	tok := mustParse(t, wordLevelJSON, "")
	for _, tc := range []struct {
		name, in   string
		addSpecial bool
		want       string
		err        string
	}{
		{"empty input", "", true, "", ""},
		{"lines in order", "{\"text\":\"hello world\"}\n{\"text\":\"\"}\n{\"text\":\"world <s>\",\"id\":7}\n", true,
			"{\"ids\":[3,1,2]}\n{\"ids\":[3]}\n{\"ids\":[3,2,3]}\n", ""},
		{"no special tokens", "{\"text\":\"hello\"}", false, "{\"ids\":[1]}\n", ""},
		{"CRLF and no final newline", "{\"text\":\"hello\"}\r\n{\"text\":\"x\"}", false, "{\"ids\":[1]}\n{\"ids\":[0]}\n", ""},
		{"malformed line", "{\"text\":\"hello\"}\n{\"text\": oops}\n{\"text\":\"world\"}\n", false, "{\"ids\":[1]}\n", "tokenize: line 2:"},
		{"missing text", "{\"text\":\"hello\"}\n{\"txt\":\"hello\"}\n", false, "{\"ids\":[1]}\n", "tokenize: line 2: want an object with a \"text\" string"},
		{"text not a string", "{\"text\":5}\n", false, "", "tokenize: line 1:"},
		{"blank line", "{\"text\":\"hello\"}\n\n", false, "{\"ids\":[1]}\n", "tokenize: line 2:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := TokenizeJSONL(strings.NewReader(tc.in), &out, tok, tc.addSpecial)
			if tc.err == "" && err != nil {
				t.Fatal(err)
			}
			if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
			if out.String() != tc.want {
				t.Errorf("output %q, want %q", out.String(), tc.want)
			}
		})
	}
}

type failingEncoder struct{ Encoder }

func (failingEncoder) Encode(string, bool) ([]int, error) { return nil, errors.New("boom") }

func TestTokenizeJSONLLarge(t *testing.T) {
	// More lines than one chunk, with a bad line in the second chunk: every
	// line before it is written, in order.
	tok := mustParse(t, wordLevelJSON, "")
	var in, want strings.Builder
	for i := 0; i < 2*jsonlChunk+10; i++ {
		if i == jsonlChunk+5 {
			in.WriteString("{\"text\": 3}\n")
			continue
		}
		text := strings.Repeat("hello ", i%5) + "world"
		fmt.Fprintf(&in, "{\"text\":%q}\n", text)
		if i < jsonlChunk+5 {
			want.WriteString("{\"ids\":[" + strings.Repeat("1,", i%5) + "2]}\n")
		}
	}
	var out bytes.Buffer
	err := TokenizeJSONL(strings.NewReader(in.String()), &out, tok, false)
	if err == nil || !strings.HasPrefix(err.Error(), fmt.Sprintf("tokenize: line %d:", jsonlChunk+6)) {
		t.Fatalf("error %v", err)
	}
	if out.String() != want.String() {
		t.Errorf("output differs (%d bytes, want %d)", out.Len(), want.Len())
	}
}

func TestTokenizeJSONLEncodeError(t *testing.T) {
	err := TokenizeJSONL(strings.NewReader("{\"text\":\"a\"}\n"), &bytes.Buffer{}, failingEncoder{}, false)
	if err == nil || err.Error() != "tokenize: line 1: boom" {
		t.Errorf("got %v", err)
	}
}

func TestEncodeBatch(t *testing.T) {
	tok := mustParse(t, wordLevelJSON, "")
	var texts []string
	for i := 0; i < 500; i++ {
		texts = append(texts, strings.Repeat("hello world ", i%7)+fmt.Sprint(i))
	}
	got, err := tok.EncodeBatch(texts, true)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range texts {
		if want := encode(t, tok, s, true); !slices.Equal(got[i], want) {
			t.Fatalf("text %d: batch %v, single %v", i, got[i], want)
		}
	}
	if out, err := tok.EncodeBatch(nil, false); err != nil || len(out) != 0 {
		t.Errorf("empty batch: %v %v", out, err)
	}
	bad := mustParse(t, `{"model":{"type":"BPE","vocab":{"a":0},"merges":[],"unk_token":"<unk>"}}`, "")
	if _, err := bad.EncodeBatch([]string{"a", "b"}, false); err == nil || !strings.HasPrefix(err.Error(), "text 1: ") {
		t.Errorf("batch error: %v", err)
	}
}

// readSpecial (used by the Rust backend) agrees with Load.
func TestReadSpecialMatchesLoad(t *testing.T) {
	dir := ensureOracle(t)
	for name, path := range oraclePaths(t, dir) {
		tok, err := loadShared(path)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(filepath.Join(path, "tokenizer.json"))
		cfg, _ := os.ReadFile(filepath.Join(path, "tokenizer_config.json"))
		sp, size, err := readSpecial(data, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if sp != tok.Special() || size != tok.VocabSize() {
			t.Errorf("%s: readSpecial %+v %d, Load %+v %d", name, sp, size, tok.Special(), tok.VocabSize())
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), []byte(wordLevelJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "chat_template.jinja"), []byte("{% for m in messages %}{{ m.content }};{% endfor %}"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, filepath.Join(dir, "tokenizer.json")} {
		tok, err := Load(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := encode(t, tok, "hello", true); !slices.Equal(got, []int{3, 1}) {
			t.Errorf("%s: %v", p, got)
		}
		if s, err := tok.ApplyChatTemplate([]Message{{"user", "a"}, {"assistant", "b"}}, false); err != nil || s != "a;b;" {
			t.Errorf("chat_template.jinja: %q %v", s, err)
		}
	}
	if _, err := Load(filepath.Join(dir, "missing")); err == nil {
		t.Error("Load of a missing path succeeded")
	}
	os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte("{bad"), 0o644)
	if _, err := Load(dir); err == nil || !strings.HasPrefix(err.Error(), "tokenizer_config.json:") {
		t.Errorf("bad config: %v", err)
	}
}
