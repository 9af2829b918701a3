package tinytok

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// ChatTemplate is the ChatML-style Jinja template put in
// tokenizer_config.json. <|im_start|> and <|im_end|> are plain text to
// this tokenizer, not special tokens.
const ChatTemplate = "{{ bos_token }}{% for message in messages %}" +
	"{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}" +
	"{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

// File names WriteFiles writes.
const (
	TokenizerFile       = "tokenizer.json"
	TokenizerConfigFile = "tokenizer_config.json"
)

// The structs below follow the Hugging Face tokenizers serialization
// (field order included) for the components this tokenizer uses.

type addedToken struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

type byteLevelConfig struct {
	Type           string `json:"type"`
	AddPrefixSpace bool   `json:"add_prefix_space"`
	TrimOffsets    bool   `json:"trim_offsets"`
	UseRegex       bool   `json:"use_regex"`
}

type templateRef struct {
	ID     string `json:"id"`
	TypeID int    `json:"type_id"`
}

type templatePiece struct {
	SpecialToken *templateRef `json:"SpecialToken,omitempty"`
	Sequence     *templateRef `json:"Sequence,omitempty"`
}

type templateSpecial struct {
	ID     string   `json:"id"`
	IDs    []int    `json:"ids"`
	Tokens []string `json:"tokens"`
}

type templateProcessing struct {
	Type          string                     `json:"type"`
	Single        []templatePiece            `json:"single"`
	Pair          []templatePiece            `json:"pair"`
	SpecialTokens map[string]templateSpecial `json:"special_tokens"`
}

type bpeModel struct {
	Type                    string       `json:"type"`
	Dropout                 *float64     `json:"dropout"`
	UnkToken                *string      `json:"unk_token"`
	ContinuingSubwordPrefix *string      `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string      `json:"end_of_word_suffix"`
	FuseUnk                 bool         `json:"fuse_unk"`
	ByteFallback            bool         `json:"byte_fallback"`
	IgnoreMerges            bool         `json:"ignore_merges"`
	Vocab                   orderedVocab `json:"vocab"`
	Merges                  [][2]string  `json:"merges"`
}

type tokenizerJSON struct {
	Version       string             `json:"version"`
	Truncation    any                `json:"truncation"`
	Padding       any                `json:"padding"`
	AddedTokens   []addedToken       `json:"added_tokens"`
	Normalizer    any                `json:"normalizer"`
	PreTokenizer  byteLevelConfig    `json:"pre_tokenizer"`
	PostProcessor templateProcessing `json:"post_processor"`
	Decoder       byteLevelConfig    `json:"decoder"`
	Model         bpeModel           `json:"model"`
}

// orderedVocab writes the vocabulary in id order, as tokenizers does,
// rather than in the key order encoding/json gives maps.
type orderedVocab []string

func (v orderedVocab) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for id, tok := range v {
		if id > 0 {
			b.WriteByte(',')
		}
		k, err := marshal(tok)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(id))
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// marshal encodes without HTML escaping: "<|pad|>" stays readable.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

func marshalIndent(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func (t *BPE) specialAdded() []addedToken {
	var out []addedToken
	for _, s := range specialTokens {
		out = append(out, addedToken{ID: t.ids[s], Content: s, Special: true})
	}
	return out
}

// TokenizerJSON renders tokenizer.json in the Hugging Face tokenizers
// schema (version "1.0"): byte-level BPE with the GPT-2 pre-tokenizer, the
// special tokens as added tokens, a TemplateProcessing post-processor that
// prepends <|begin_of_text|>. Equal tokenizers render equal bytes.
func (t *BPE) TokenizerJSON() ([]byte, error) {
	bos := t.ids[BeginOfText]
	seqA := templatePiece{Sequence: &templateRef{"A", 0}}
	seqB := templatePiece{Sequence: &templateRef{"B", 1}}
	bos0 := templatePiece{SpecialToken: &templateRef{BeginOfText, 0}}
	bos1 := templatePiece{SpecialToken: &templateRef{BeginOfText, 1}}
	doc := tokenizerJSON{
		Version:      "1.0",
		AddedTokens:  t.specialAdded(),
		PreTokenizer: byteLevelConfig{Type: "ByteLevel", AddPrefixSpace: false, TrimOffsets: true, UseRegex: true},
		PostProcessor: templateProcessing{
			Type:   "TemplateProcessing",
			Single: []templatePiece{bos0, seqA},
			Pair:   []templatePiece{bos0, seqA, bos1, seqB},
			SpecialTokens: map[string]templateSpecial{
				BeginOfText: {ID: BeginOfText, IDs: []int{bos}, Tokens: []string{BeginOfText}},
			},
		},
		Decoder: byteLevelConfig{Type: "ByteLevel", AddPrefixSpace: true, TrimOffsets: true, UseRegex: true},
		Model: bpeModel{
			Type:   "BPE",
			Vocab:  orderedVocab(t.Vocab),
			Merges: t.Merges,
		},
	}
	if doc.Model.Merges == nil {
		doc.Model.Merges = [][2]string{}
	}
	return marshalIndent(doc)
}

// TokenizerConfigJSON renders tokenizer_config.json as transformers writes
// it (sorted keys): the special tokens, model_max_length,
// PreTrainedTokenizerFast as the class, and ChatTemplate.
func (t *BPE) TokenizerConfigJSON() ([]byte, error) {
	decoder := map[string]any{}
	for _, a := range t.specialAdded() {
		decoder[strconv.Itoa(a.ID)] = map[string]any{
			"content": a.Content, "lstrip": false, "normalized": false,
			"rstrip": false, "single_word": false, "special": true,
		}
	}
	maxLen := t.ModelMaxLength
	if maxLen <= 0 {
		maxLen = DefaultModelMaxLength
	}
	return marshalIndent(map[string]any{
		"added_tokens_decoder":         decoder,
		"bos_token":                    BeginOfText,
		"eos_token":                    EndOfText,
		"pad_token":                    Pad,
		"chat_template":                ChatTemplate,
		"clean_up_tokenization_spaces": false,
		"model_input_names":            []string{"input_ids", "attention_mask"},
		"model_max_length":             maxLen,
		"tokenizer_class":              "PreTrainedTokenizerFast",
	})
}

// WriteFiles writes tokenizer.json and tokenizer_config.json into dir
// (created if missing), each through a temporary file renamed into place.
func (t *BPE) WriteFiles(dir string) error {
	tok, err := t.TokenizerJSON()
	if err != nil {
		return fmt.Errorf("tinytok: %w", err)
	}
	cfg, err := t.TokenizerConfigJSON()
	if err != nil {
		return fmt.Errorf("tinytok: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("tinytok: %w", err)
	}
	for name, data := range map[string][]byte{TokenizerFile: tok, TokenizerConfigFile: cfg} {
		p := filepath.Join(dir, name)
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			return fmt.Errorf("tinytok: write %s: %w", p, err)
		}
		if err := os.Rename(tmp, p); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("tinytok: write %s: %w", p, err)
		}
	}
	return nil
}
