// Package tinytok owns the tokenizer of herd's tiny test models: a GPT-2
// style byte-level BPE trained by the project itself on a small embedded
// sample text, written out as a real Hugging Face tokenizer.json and
// tokenizer_config.json, so that `herd model init-tiny` produces a model
// directory every Hugging Face tokenizer implementation can load.
//
// The vocabulary is the 256 byte tokens (id = byte value), then one token
// per learned merge, then the special tokens <|begin_of_text|>,
// <|end_of_text|> and <|pad|> as added tokens; the post-processor prepends
// <|begin_of_text|> to every sequence, as Llama 3's does.
//
// The package is pure Go and imports no compute code.
package tinytok

import (
	_ "embed"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// SampleText is the embedded training text: English prose and dialogue,
// numbers, Go, Python, JSON, SQL and shell, and several other scripts and
// emoji, so that the merges cover what tests feed a tiny model.
//
//go:embed sample.txt
var SampleText string

// The special tokens, in id order at the end of the vocabulary.
const (
	BeginOfText = "<|begin_of_text|>"
	EndOfText   = "<|end_of_text|>"
	Pad         = "<|pad|>"
)

var specialTokens = []string{BeginOfText, EndOfText, Pad}

// DefaultModelMaxLength is the model_max_length Train puts in tokenizer_config.json.
const DefaultModelMaxLength = 2048

// BPE is a trained byte-level BPE tokenizer.
type BPE struct {
	// Vocab maps id to token, in byte-level form (each byte shown as the
	// printable character GPT-2's bytes_to_unicode assigns it); the special
	// tokens are the last len(specialTokens) entries.
	Vocab []string
	// Merges are the learned merges in rank order: Merges[0] is applied first.
	Merges [][2]string
	// ModelMaxLength goes into tokenizer_config.json.
	ModelMaxLength int

	ids   map[string]int
	ranks map[[2]string]int
}

// MinVocabSize is the smallest vocabulary: the 256 bytes and the special tokens.
const MinVocabSize = 256 + 3

// Train learns merges from text until the vocabulary, special tokens
// included, has vocabSize entries. Training is deterministic: ties between
// equally frequent pairs go to the pair of smaller ids, as in Hugging Face
// tokenizers' BpeTrainer. It fails when text has too few distinct pairs to
// reach vocabSize.
func Train(text string, vocabSize int) (*BPE, error) {
	if vocabSize < MinVocabSize {
		return nil, fmt.Errorf("tinytok: vocab size %d is below %d (256 bytes + %d special tokens)", vocabSize, MinVocabSize, len(specialTokens))
	}
	target := vocabSize - len(specialTokens)
	vocab := make([]string, 256, vocabSize)
	ids := make(map[string]int, vocabSize)
	for b := 0; b < 256; b++ {
		vocab[b] = string(byteToRune[b])
		ids[vocab[b]] = b
	}

	// Words are the pre-tokens with their counts, as id sequences, in a
	// fixed order so that training does not depend on map iteration.
	counts := map[string]int{}
	for _, piece := range preTokenize(text) {
		counts[piece]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	type word struct {
		syms  []int
		count int
	}
	words := make([]word, len(keys))
	for i, k := range keys {
		syms := make([]int, len(k))
		for j := 0; j < len(k); j++ {
			syms[j] = int(k[j])
		}
		words[i] = word{syms, counts[k]}
	}

	var merges [][2]string
	// A merge can recreate an existing token ("ab"+"c" after "a"+"bc"), and
	// so a pair already merged; tokenizers keep one rank per pair, so a pair
	// is never merged twice.
	used := map[[2]int]bool{}
	for len(vocab) < target {
		pairs := map[[2]int]int{}
		for _, w := range words {
			for j := 0; j+1 < len(w.syms); j++ {
				pairs[[2]int{w.syms[j], w.syms[j+1]}] += w.count
			}
		}
		best, bestCount := [2]int{}, 0
		for p, c := range pairs {
			if used[p] {
				continue
			}
			if c > bestCount || c == bestCount && (p[0] < best[0] || p[0] == best[0] && p[1] < best[1]) {
				best, bestCount = p, c
			}
		}
		if bestCount == 0 {
			return nil, fmt.Errorf("tinytok: the training text supports only %d merges (vocab size %d); ask for a smaller vocabulary or give more text",
				len(merges), len(vocab)+len(specialTokens))
		}
		tok := vocab[best[0]] + vocab[best[1]]
		id, seen := ids[tok]
		if !seen {
			id = len(vocab)
			vocab = append(vocab, tok)
			ids[tok] = id
		}
		used[best] = true
		merges = append(merges, [2]string{vocab[best[0]], vocab[best[1]]})
		for i := range words {
			words[i].syms = mergeIDs(words[i].syms, best, id)
		}
	}
	for _, s := range specialTokens {
		ids[s] = len(vocab)
		vocab = append(vocab, s)
	}
	t := &BPE{Vocab: vocab, Merges: merges, ModelMaxLength: DefaultModelMaxLength}
	t.index()
	return t, nil
}

func mergeIDs(syms []int, pair [2]int, id int) []int {
	out := syms[:0]
	for j := 0; j < len(syms); j++ {
		if j+1 < len(syms) && syms[j] == pair[0] && syms[j+1] == pair[1] {
			out = append(out, id)
			j++
			continue
		}
		out = append(out, syms[j])
	}
	return out
}

func (t *BPE) index() {
	t.ids = make(map[string]int, len(t.Vocab))
	for i, tok := range t.Vocab {
		t.ids[tok] = i
	}
	t.ranks = make(map[[2]string]int, len(t.Merges))
	for i, m := range t.Merges {
		if _, dup := t.ranks[m]; !dup {
			t.ranks[m] = i
		}
	}
}

// TokenID is the id of a token, given in byte-level form or as a special
// token's text.
func (t *BPE) TokenID(tok string) (int, bool) {
	id, ok := t.ids[tok]
	return id, ok
}

// Encode tokenizes text as the Hugging Face tokenizers library does with
// this tokenizer.json and add_special_tokens=false: special tokens written
// in the text become their ids, the rest is split with the GPT-2 pattern,
// mapped to byte-level characters and merged by rank. It is a simple
// reference encoder for tests, not a fast one.
func (t *BPE) Encode(text string) []int {
	var out []int
	for text != "" {
		at, special := len(text), ""
		for _, s := range specialTokens {
			if i := strings.Index(text, s); i >= 0 && i < at {
				at, special = i, s
			}
		}
		for _, piece := range preTokenize(text[:at]) {
			out = append(out, t.encodeWord(piece)...)
		}
		if special == "" {
			break
		}
		out = append(out, t.ids[special])
		text = text[at+len(special):]
	}
	return out
}

// encodeWord applies the merges to one pre-token (raw bytes), repeatedly
// merging every occurrence of the lowest-ranked adjacent pair.
func (t *BPE) encodeWord(piece string) []int {
	syms := make([]string, len(piece))
	for i := 0; i < len(piece); i++ {
		syms[i] = string(byteToRune[piece[i]])
	}
	for len(syms) > 1 {
		best, bestRank := -1, len(t.Merges)
		for i := 0; i+1 < len(syms); i++ {
			if r, ok := t.ranks[[2]string{syms[i], syms[i+1]}]; ok && r < bestRank {
				best, bestRank = i, r
			}
		}
		if best < 0 {
			break
		}
		pair := [2]string{syms[best], syms[best+1]}
		merged := syms[:0:0]
		for i := 0; i < len(syms); i++ {
			if i+1 < len(syms) && syms[i] == pair[0] && syms[i+1] == pair[1] {
				merged = append(merged, pair[0]+pair[1])
				i++
				continue
			}
			merged = append(merged, syms[i])
		}
		syms = merged
	}
	ids := make([]int, len(syms))
	for i, s := range syms {
		ids[i] = t.ids[s] // every merge result is in the vocabulary
	}
	return ids
}

// Decode turns ids back into text (special tokens included as their text).
// Invalid UTF-8 from a partial sequence is kept as the raw bytes.
func (t *BPE) Decode(ids []int) (string, error) {
	var b strings.Builder
	for _, id := range ids {
		if id < 0 || id >= len(t.Vocab) {
			return "", fmt.Errorf("tinytok: id %d outside the vocabulary of %d", id, len(t.Vocab))
		}
		tok := t.Vocab[id]
		if id >= len(t.Vocab)-len(specialTokens) {
			b.WriteString(tok)
			continue
		}
		for _, r := range tok {
			by, ok := runeToByte[r]
			if !ok {
				return "", errors.New("tinytok: vocabulary token outside the byte-level alphabet")
			}
			b.WriteByte(by)
		}
	}
	return b.String(), nil
}
