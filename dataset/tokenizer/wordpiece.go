package tokenizer

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// wordPieceModel is greedy longest-match-first WordPiece: a word that cannot
// be covered entirely becomes the unk token.
type wordPieceModel struct {
	vocab    map[string]int32
	unkToken string
	prefix   string
	maxChars int
	cache    *wordCache
}

func (m *wordPieceModel) unk(dst []int) ([]int, error) {
	id, ok := m.vocab[m.unkToken]
	if !ok {
		return dst, fmt.Errorf("%w: WordPiece unk token %q is not in the vocabulary", ErrEncode, m.unkToken)
	}
	return append(dst, int(id)), nil
}

func (m *wordPieceModel) tokenize(word string, dst []int, sc *scratch) ([]int, error) {
	if ids, ok := m.cache.get(word); ok {
		for _, id := range ids {
			dst = append(dst, int(id))
		}
		return dst, nil
	}
	start0 := len(dst)
	dst, err := m.tokenizeUncached(word, dst)
	if err == nil {
		ids := sc.ids[:0]
		for _, id := range dst[start0:] {
			ids = append(ids, int32(id))
		}
		m.cache.put(word, ids)
		sc.ids = ids
	}
	return dst, err
}

func (m *wordPieceModel) tokenizeUncached(word string, dst []int) ([]int, error) {
	if utf8.RuneCountInString(word) > m.maxChars {
		return m.unk(dst)
	}
	start0 := len(dst)
	var buf []byte
	for start := 0; start < len(word); {
		end := len(word)
		found := false
		for start < end {
			var id int32
			var ok bool
			if start > 0 {
				buf = append(append(buf[:0], m.prefix...), word[start:end]...)
				id, ok = m.vocab[string(buf)]
			} else {
				id, ok = m.vocab[word[start:end]]
			}
			if ok {
				dst = append(dst, int(id))
				found = true
				break
			}
			_, n := utf8.DecodeLastRuneInString(word[start:end])
			end -= n
		}
		if !found {
			return m.unk(dst[:start0])
		}
		start = end
	}
	return dst, nil
}

// wordLevelModel maps whole words to ids.
type wordLevelModel struct {
	vocab    map[string]int32
	unkToken string
}

func (m *wordLevelModel) tokenize(word string, dst []int, sc *scratch) ([]int, error) {
	if id, ok := m.vocab[word]; ok {
		return append(dst, int(id)), nil
	}
	if id, ok := m.vocab[m.unkToken]; ok {
		return append(dst, int(id)), nil
	}
	return dst, fmt.Errorf("%w: WordLevel unk token %q is not in the vocabulary", ErrEncode, m.unkToken)
}

type wordPieceJSON struct {
	Vocab    map[string]int32 `json:"vocab"`
	UnkToken *string          `json:"unk_token"`
	Prefix   *string          `json:"continuing_subword_prefix"`
	MaxChars *int             `json:"max_input_chars_per_word"`
}

func buildWordPiece(raw json.RawMessage, path string) (*wordPieceModel, error) {
	var c wordPieceJSON
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fieldErr(path, err)
	}
	m := &wordPieceModel{vocab: c.Vocab, unkToken: "[UNK]", prefix: "##", maxChars: 100, cache: newWordCache()}
	if c.UnkToken != nil {
		m.unkToken = *c.UnkToken
	}
	if c.Prefix != nil {
		m.prefix = *c.Prefix
	}
	if c.MaxChars != nil {
		m.maxChars = *c.MaxChars
	}
	if m.vocab == nil {
		m.vocab = map[string]int32{}
	}
	return m, nil
}
