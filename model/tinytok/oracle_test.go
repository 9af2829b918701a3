package tinytok

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The oracle is Hugging Face's tokenizers.js, installed by the tokenizer
// oracle tests under tests/oracle/tokenizer: it loads the tokenizer.json
// and tokenizer_config.json written here and must produce the same ids as
// Encode, and the post-processor must prepend <|begin_of_text|>.
const jsOracle = `
import { Tokenizer } from "@huggingface/tokenizers";
import { readFileSync } from "node:fs";
import { join } from "node:path";
const dir = process.env.TOKDIR;
const tok = new Tokenizer(JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8")),
                          JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8")));
const texts = JSON.parse(readFileSync(process.env.TEXTS, "utf8"));
// tokenizers.js refuses to decode an empty id list.
const decode = (ids) => ids.length === 0 ? "" :
  tok.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
const out = texts.map((t) => {
  const ids = tok.encode(t, { add_special_tokens: false }).ids;
  return { ids, ids_special: tok.encode(t, { add_special_tokens: true }).ids, decoded: decode(ids) };
});
process.stdout.write(JSON.stringify(out));
`

func TestMatchesTokenizersJS(t *testing.T) {
	oracleDir, err := filepath.Abs("../../tests/oracle/tokenizer")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(oracleDir, "node_modules", "@huggingface", "tokenizers")); err != nil {
		t.Fatal("tokenizers.js is not installed under tests/oracle/tokenizer/node_modules: run make test-deps")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node not found: the tokenizer oracle needs Node.js (make test-deps)")
	}
	texts := []string{
		"Hello world",
		"The herd moved slowly across the valley at dawn.",
		"I'm sure it's fine; they'll see we've done what you're asking, and he'd agree.",
		"  leading spaces, trailing spaces   ",
		"line one\nline two\n\n\tindented\r\nwindows",
		"x := 3.14159 * r * r // area; 1,000,000 and 99.9%",
		"func main() { fmt.Println(\"héllo\") }",
		"Le café est très chaud. Größere Tiere. ¿Dónde está?",
		"Καλημέρα σε όλους. Доброе утро. 早上好，今天的天气很好。 こんにちは。 안녕하세요",
		"emoji 🐑🐑🐑 ➜ 🏞️ ✅",
		"<|begin_of_text|>special<|end_of_text|> and <|pad|><|pad|>",
		"a<|pad",
		"numbers 1234567890 Ⅻ ² ½",
		"\u00a0non-breaking\u00a0space\u2003em space",
		"",
		"'s'S'tT 'll'LL",
		SampleText,
	}
	for _, n := range []int{MinVocabSize, 512, 1024} {
		b := train(t, n)
		dir := t.TempDir()
		if err := b.WriteFiles(dir); err != nil {
			t.Fatal(err)
		}
		in := filepath.Join(dir, "texts.json")
		raw, _ := json.Marshal(texts)
		os.WriteFile(in, raw, 0o644)
		cmd := exec.Command(node, "--input-type=module", "-e", jsOracle)
		cmd.Dir = oracleDir
		cmd.Env = append(os.Environ(), "TOKDIR="+dir, "TEXTS="+in)
		out, err := cmd.Output()
		if err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				t.Fatalf("node: %v\n%s", err, ee.Stderr)
			}
			t.Fatal(err)
		}
		var got []struct {
			IDs        []int  `json:"ids"`
			IDsSpecial []int  `json:"ids_special"`
			Decoded    string `json:"decoded"`
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("node output %q: %v", out, err)
		}
		bos, _ := b.TokenID(BeginOfText)
		for i, text := range texts {
			want := b.Encode(text)
			if want == nil {
				want = []int{}
			}
			if got[i].IDs == nil {
				got[i].IDs = []int{}
			}
			if !reflect.DeepEqual(got[i].IDs, want) {
				t.Errorf("vocab %d, %q:\n tokenizers.js %v\n Encode        %v", n, text, got[i].IDs, want)
			}
			if wantS := append([]int{bos}, want...); !reflect.DeepEqual(got[i].IDsSpecial, wantS) {
				t.Errorf("vocab %d, %q with special tokens: tokenizers.js %v, want %v", n, text, got[i].IDsSpecial, wantS)
			}
			if text != "" && got[i].Decoded != text {
				t.Errorf("vocab %d: tokenizers.js decodes %q as %q", n, text, got[i].Decoded)
			}
		}
		if t.Failed() {
			t.Logf("tokens: %s", strings.Join(b.Vocab[256:270], " "))
		}
	}
}
