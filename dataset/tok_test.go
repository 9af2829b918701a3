package dataset

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/herdml/herd/dataset/tokenizer"
)

// The tests use a small real tokenizer: byte-level BPE (GPT-2 style) with
// merges learned here from a fixed text, special tokens as added tokens, a
// TemplateProcessing post-processor that prepends BOS, and a ChatML chat
// template. It is built in the test so that its variants (no EOS, no PAD, no
// BOS, another template) are one option away.

const trainCorpus = `The quick brown fox jumps over the lazy dog. Below is an instruction that describes a task.
Write a response that appropriately completes the request. ### Instruction: ### Input: ### Response:
hello world, hello there. What is the capital of France? The capital of France is Paris.
user assistant system You are a helpful assistant. Translate the following sentence into French.
the and of to in is that for it with as was on be at by this had not are but from or have an they which one you were her all she there would their we him been has when who will more no if out so said what up its about into than them can only other new some could time these two may then do first any my now such like our over man me even most made after also did many before must through back years where much your way well down should because each just those people how too little state good very make world still own see men work long get here between both life being under never day same another know while last might us great old year off come since against go came right used take three`

type tokOpts struct {
	noBOS, noEOS, noPAD bool
	chatTemplate        string // "" for ChatML; "-" for none
}

const chatML = `{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}`

// byteAlphabet is GPT-2's bytes_to_unicode.
func byteAlphabet() [256]rune {
	var m [256]rune
	n := 0
	for b := 0; b < 256; b++ {
		if b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE && b <= 0xFF {
			m[b] = rune(b)
		} else {
			m[b] = rune(256 + n)
			n++
		}
	}
	return m
}

var (
	bpeOnce   sync.Once
	bpeVocab  map[string]int
	bpeOrder  []string
	bpeMerges []string
)

// trainTestBPE learns the test tokenizer's merges from trainCorpus (once).
func trainTestBPE() {
	alpha := byteAlphabet()
	vocab := map[string]int{}
	var order []string
	add := func(s string) {
		if _, ok := vocab[s]; !ok {
			vocab[s] = len(order)
			order = append(order, s)
		}
	}
	for b := 0; b < 256; b++ {
		add(string(alpha[b]))
	}
	// Words: runs of letters with their leading space, as GPT-2 splits them.
	var words [][]string
	for _, w := range strings.FieldsFunc(trainCorpus, func(r rune) bool { return r == ' ' || r == '\n' }) {
		for _, v := range []string{" " + w, w} {
			var syms []string
			for _, b := range []byte(v) {
				syms = append(syms, string(alpha[b]))
			}
			words = append(words, syms)
		}
	}
	var merges []string
	for len(merges) < 300 {
		counts := map[[2]string]int{}
		for _, w := range words {
			for i := 0; i+1 < len(w); i++ {
				counts[[2]string{w[i], w[i+1]}]++
			}
		}
		var pairs [][2]string
		for p := range counts {
			pairs = append(pairs, p)
		}
		if len(pairs) == 0 {
			break
		}
		sort.Slice(pairs, func(i, j int) bool {
			if counts[pairs[i]] != counts[pairs[j]] {
				return counts[pairs[i]] > counts[pairs[j]]
			}
			return pairs[i][0]+" "+pairs[i][1] < pairs[j][0]+" "+pairs[j][1]
		})
		best := pairs[0]
		if counts[best] < 2 {
			break
		}
		merges = append(merges, best[0]+" "+best[1])
		add(best[0] + best[1])
		for k, w := range words {
			var out []string
			for i := 0; i < len(w); i++ {
				if i+1 < len(w) && w[i] == best[0] && w[i+1] == best[1] {
					out = append(out, best[0]+best[1])
					i++
				} else {
					out = append(out, w[i])
				}
			}
			words[k] = out
		}
	}
	bpeVocab, bpeOrder, bpeMerges = vocab, order, merges
}

// writeTestTokenizer writes tokenizer.json and tokenizer_config.json into a
// new directory and returns it.
func writeTestTokenizer(t testing.TB, o tokOpts) string {
	t.Helper()
	bpeOnce.Do(trainTestBPE)
	vocab := maps.Clone(bpeVocab)
	order := slices.Clone(bpeOrder)
	merges := bpeMerges
	specials := []string{"<|begin|>", "<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>"}
	var added []map[string]any
	bosID := len(order)
	for _, s := range specials {
		added = append(added, map[string]any{
			"id": len(order), "content": s, "single_word": false, "lstrip": false, "rstrip": false,
			"normalized": false, "special": true,
		})
		order = append(order, s)
	}
	var post any
	if !o.noBOS {
		post = map[string]any{
			"type":   "TemplateProcessing",
			"single": []any{map[string]any{"SpecialToken": map[string]any{"id": "<|begin|>", "type_id": 0}}, map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}},
			"pair":   []any{map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}, map[string]any{"Sequence": map[string]any{"id": "B", "type_id": 1}}},
			"special_tokens": map[string]any{"<|begin|>": map[string]any{
				"id": "<|begin|>", "ids": []int{bosID}, "tokens": []string{"<|begin|>"}}},
		}
	}
	tj := map[string]any{
		"version":      "1.0",
		"truncation":   nil,
		"padding":      nil,
		"added_tokens": added,
		"normalizer":   nil,
		"pre_tokenizer": map[string]any{
			"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
		"post_processor": post,
		"decoder":        map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
		"model": map[string]any{
			"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": nil,
			"end_of_word_suffix": nil, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
			"vocab": vocab, "merges": merges,
		},
	}
	cfg := map[string]any{}
	if !o.noBOS {
		cfg["bos_token"] = "<|begin|>"
	}
	if !o.noEOS {
		cfg["eos_token"] = "<|endoftext|>"
	}
	if !o.noPAD {
		cfg["pad_token"] = "<|pad|>"
	}
	switch o.chatTemplate {
	case "":
		cfg["chat_template"] = chatML
	case "-":
	default:
		cfg["chat_template"] = o.chatTemplate
	}
	dir := t.TempDir()
	for name, v := range map[string]any{"tokenizer.json": tj, "tokenizer_config.json": cfg} {
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func loadTestTokenizer(t testing.TB, o tokOpts) *tokenizer.Tokenizer {
	t.Helper()
	tok, err := tokenizer.Load(writeTestTokenizer(t, o))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestTestTokenizer(t *testing.T) {
	tok := loadTestTokenizer(t, tokOpts{})
	sp := tok.Special()
	if sp.BOS < 0 || sp.EOS < 0 || sp.PAD < 0 {
		t.Fatalf("special tokens %+v", sp)
	}
	text := "The capital of France is Paris.\n<|im_start|>user\nhello<|im_end|>"
	ids, err := tok.Encode(text, true)
	if err != nil {
		t.Fatal(err)
	}
	if ids[0] != sp.BOS {
		t.Errorf("first id %d, want BOS %d", ids[0], sp.BOS)
	}
	if len(ids) > 18 {
		t.Errorf("%d tokens for %q: merges not applied", len(ids), text)
	}
	back, err := tok.Decode(ids[1:], false)
	if err != nil || back != text {
		t.Errorf("round trip %q, %v", back, err)
	}
	if tok, _ := tokenizer.Load(writeTestTokenizer(t, tokOpts{noBOS: true, noEOS: true, noPAD: true})); tok.Special().EOS != -1 {
		t.Errorf("noEOS: %+v", tok.Special())
	}
}
