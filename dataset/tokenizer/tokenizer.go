package tokenizer

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// Encoder is what the rest of herd needs from a tokenizer. *Tokenizer
// implements it; so does the optional Rust-backed implementation built with
// the hftokenizers tag.
type Encoder interface {
	// Encode returns the ids of text; addSpecial applies the post-processor
	// (BOS/EOS, [CLS]/[SEP], ...).
	Encode(text string, addSpecial bool) ([]int, error)
	// Decode returns the text of ids; skipSpecial leaves out special tokens.
	Decode(ids []int, skipSpecial bool) (string, error)
	// VocabSize is the number of ids an embedding matrix must hold.
	VocabSize() int
	// Special returns the BOS/EOS/PAD/UNK tokens.
	Special() SpecialTokens
}

// SpecialTokens names the special tokens a model uses. An id is -1 when the
// token is absent or not in the vocabulary; a string is "" when absent.
type SpecialTokens struct {
	BOS, EOS, PAD, UNK                     int
	BOSToken, EOSToken, PADToken, UNKToken string
}

// Tokenizer is a loaded Hugging Face tokenizer. It is safe for concurrent
// use.
type Tokenizer struct {
	normalizer normalizer
	pre        preTokenizer
	model      model
	post       postProcessor
	decoder    decoder
	added      *addedVocab

	idToToken []string
	known     []bool           // idToToken[i] is a real token
	special   []bool           // id is a special added token
	vocab     map[string]int32 // the model's vocabulary
	addedIDs  map[string]int   // added tokens, which take precedence

	specialTokens SpecialTokens
	chatTemplates map[string]string
	chatOnce      sync.Map // template name → *compiledTemplate

	pool sync.Pool // *scratch
}

var _ Encoder = (*Tokenizer)(nil)

// Encode returns the token ids of text, exactly as the Hugging Face
// tokenizers library's encode(text, add_special_tokens) does. Text that is
// not valid UTF-8 has each run of invalid bytes replaced by U+FFFD first.
func (t *Tokenizer) Encode(text string, addSpecial bool) ([]int, error) {
	if !utf8.ValidString(text) {
		text = strings.ToValidUTF8(text, "\uFFFD")
	}
	sc := t.pool.Get().(*scratch)
	defer t.pool.Put(sc)
	ids := make([]int, 0, len(text)/4+4)
	var err error
	for _, seg := range t.added.raw.split(text, nil) {
		if seg.id >= 0 {
			ids = append(ids, seg.id)
			continue
		}
		s := text[seg.start:seg.end]
		if t.normalizer != nil {
			s = t.normalizer.normalize(s)
		}
		first := seg.start == 0
		if t.added.normalized.empty() {
			if ids, err = t.encodeText(s, first, ids, sc); err != nil {
				return nil, err
			}
			continue
		}
		for _, sub := range t.added.normalized.split(s, nil) {
			if sub.id >= 0 {
				ids = append(ids, sub.id)
				continue
			}
			if ids, err = t.encodeText(s[sub.start:sub.end], first && sub.start == 0, ids, sc); err != nil {
				return nil, err
			}
		}
	}
	if addSpecial && t.post != nil {
		ids = t.post.process(ids)
	}
	return ids, nil
}

// encodeText pre-tokenizes normalized text and runs the model on each piece.
func (t *Tokenizer) encodeText(s string, first bool, ids []int, sc *scratch) ([]int, error) {
	if s == "" {
		return ids, nil
	}
	p := piece{text: s, first: first}
	if t.pre == nil {
		return t.model.tokenize(p.text, ids, sc)
	}
	sc.pieces = t.pre.preTokenize(sc.pieces[:0], p, sc)
	var err error
	for _, q := range sc.pieces {
		if ids, err = t.model.tokenize(q.text, ids, sc); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// EncodeBatch encodes texts in parallel over GOMAXPROCS goroutines; result
// i belongs to texts[i]. The first error (by index) is returned.
func (t *Tokenizer) EncodeBatch(texts []string, addSpecial bool) ([][]int, error) {
	out := make([][]int, len(texts))
	errs := make([]error, len(texts))
	workers := min(runtime.GOMAXPROCS(0), len(texts))
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(texts) {
					return
				}
				out[i], errs[i] = t.Encode(texts[i], addSpecial)
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("text %d: %w", i, err)
		}
	}
	return out, nil
}

// Decode returns the text of ids as the Hugging Face tokenizers library's
// decode does: ids are mapped to tokens (unknown ids are skipped), special
// tokens are left out when skipSpecial is set, and the decoder joins them.
// No clean_up_tokenization_spaces pass is applied (that is a transformers
// option), so byte-level tokenizers round-trip exactly.
func (t *Tokenizer) Decode(ids []int, skipSpecial bool) (string, error) {
	toks := make([]string, 0, len(ids))
	for _, id := range ids {
		if id < 0 || id >= len(t.idToToken) || !t.known[id] {
			continue
		}
		if skipSpecial && t.special[id] {
			continue
		}
		toks = append(toks, t.idToToken[id])
	}
	if t.decoder == nil {
		return strings.Join(toks, " "), nil
	}
	return strings.Join(t.decoder.decodeChain(toks), ""), nil
}

// TokenToID returns the id of a token (added tokens first, then the model
// vocabulary).
func (t *Tokenizer) TokenToID(tok string) (int, bool) {
	if id, ok := t.addedIDs[tok]; ok {
		return id, true
	}
	id, ok := t.vocab[tok]
	return int(id), ok
}

// IDToToken returns the token of an id.
func (t *Tokenizer) IDToToken(id int) (string, bool) {
	if id < 0 || id >= len(t.idToToken) || !t.known[id] {
		return "", false
	}
	return t.idToToken[id], true
}

// VocabSize returns the highest id plus one, over the model vocabulary and
// the added tokens: the rows an embedding matrix needs.
func (t *Tokenizer) VocabSize() int { return len(t.idToToken) }

// Special returns the BOS/EOS/PAD/UNK tokens, from tokenizer_config.json and
// else from tokenizer.json (post-processor template, padding, model unk).
func (t *Tokenizer) Special() SpecialTokens { return t.specialTokens }
