//go:build hftokenizers

package tokenizer

import (
	"fmt"
	"strings"

	hf "github.com/daulet/tokenizers"
)

// HFTokenizer is the optional backend: the Rust Hugging Face tokenizers
// library itself, through github.com/daulet/tokenizers (cgo). It is built
// only with the hftokenizers build tag and needs libtokenizers.a at link
// time; see docs/tokenizers.md. It implements Encoder.
type HFTokenizer struct {
	tk        *hf.Tokenizer
	special   SpecialTokens
	vocabSize int
}

var _ Encoder = (*HFTokenizer)(nil)

// LoadHF loads path (a tokenizer.json or a directory holding one, with
// tokenizer_config.json beside it) into the Rust library.
func LoadHF(path string) (*HFTokenizer, error) {
	data, cfg, _, err := readFiles(path)
	if err != nil {
		return nil, err
	}
	special, size, err := readSpecial(data, cfg)
	if err != nil {
		return nil, err
	}
	tk, err := hf.FromBytes(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: hftokenizers: %w", err)
	}
	return &HFTokenizer{tk: tk, special: special, vocabSize: size}, nil
}

// Encode encodes text with the Rust library. Text holding a NUL byte is
// refused: it cannot cross the C boundary intact.
func (h *HFTokenizer) Encode(text string, addSpecial bool) ([]int, error) {
	if strings.IndexByte(text, 0) >= 0 {
		return nil, fmt.Errorf("%w: the hftokenizers backend cannot pass a NUL byte to the Rust library", ErrEncode)
	}
	ids, _ := h.tk.Encode(text, addSpecial)
	out := make([]int, len(ids))
	for i, id := range ids {
		out[i] = int(id)
	}
	return out, nil
}

// Decode decodes ids with the Rust library.
func (h *HFTokenizer) Decode(ids []int, skipSpecial bool) (string, error) {
	in := make([]uint32, 0, len(ids))
	for _, id := range ids {
		if id >= 0 && id < 1<<32 {
			in = append(in, uint32(id))
		}
	}
	return h.tk.Decode(in, skipSpecial), nil
}

// VocabSize is the highest id plus one, as for Tokenizer.
func (h *HFTokenizer) VocabSize() int { return h.vocabSize }

// Special returns the special tokens, resolved as for Tokenizer.
func (h *HFTokenizer) Special() SpecialTokens { return h.special }

// Close frees the Rust tokenizer.
func (h *HFTokenizer) Close() error { return h.tk.Close() }
