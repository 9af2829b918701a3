package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

var (
	// ErrUnsupported is returned by Load for a tokenizer.json component this
	// package does not implement; the message names the component.
	ErrUnsupported = errors.New("tokenizer: unsupported component")
	// ErrEncode is returned when text cannot be encoded (for example an
	// unknown character and an unk token missing from the vocabulary).
	ErrEncode = errors.New("tokenizer: cannot encode")
)

// fieldErr wraps err with the tokenizer.json field it concerns, e.g.
// "tokenizer.json: model.merges[12]: ...".
func fieldErr(path string, err error) error {
	return fmt.Errorf("%s: %w", path, err)
}

func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || bytes.Equal(t, []byte("null"))
}

// fileJSON is the top level of tokenizer.json. Truncation and padding are
// read but not applied: herd packs and pads sequences itself.
type fileJSON struct {
	AddedTokens   []addedToken    `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	Model         json.RawMessage `json:"model"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Padding       *struct {
		PadToken string `json:"pad_token"`
	} `json:"padding"`
}

// configJSON is the part of tokenizer_config.json this package reads.
type configJSON struct {
	BOS          json.RawMessage `json:"bos_token"`
	EOS          json.RawMessage `json:"eos_token"`
	PAD          json.RawMessage `json:"pad_token"`
	UNK          json.RawMessage `json:"unk_token"`
	ChatTemplate json.RawMessage `json:"chat_template"`
}

// Load reads a tokenizer from path: a tokenizer.json file, or a directory
// holding one. A tokenizer_config.json (and chat_template.jinja) beside it
// is read when present, for special tokens and the chat template.
func Load(path string) (*Tokenizer, error) {
	data, cfg, dir, err := readFiles(path)
	if err != nil {
		return nil, err
	}
	t, err := Parse(data, cfg)
	if err != nil {
		return nil, err
	}
	if len(t.chatTemplates) == 0 {
		if tpl, err := os.ReadFile(filepath.Join(dir, "chat_template.jinja")); err == nil {
			t.chatTemplates = map[string]string{"default": string(tpl)}
		}
	}
	return t, nil
}

// Parse builds a tokenizer from the contents of tokenizer.json and of
// tokenizer_config.json (which may be nil).
func Parse(tokenizerJSON, configJSONData []byte) (*Tokenizer, error) {
	var f fileJSON
	if err := json.Unmarshal(tokenizerJSON, &f); err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	t := &Tokenizer{}
	var err error
	if t.normalizer, err = buildNormalizer(f.Normalizer, "tokenizer.json: normalizer"); err != nil {
		return nil, err
	}
	if t.pre, err = buildPreTokenizer(f.PreTokenizer, "tokenizer.json: pre_tokenizer"); err != nil {
		return nil, err
	}
	var vocab map[string]int32
	if t.model, vocab, err = buildModel(f.Model, "tokenizer.json: model"); err != nil {
		return nil, err
	}
	if bpe, ok := t.model.(*bpeModel); ok && t.pre != nil && lastByteLevel(t.pre) {
		bpe.setByteLevel()
	}
	if t.post, err = buildPostProcessor(f.PostProcessor, "tokenizer.json: post_processor"); err != nil {
		return nil, err
	}
	if t.decoder, err = buildDecoder(f.Decoder, "tokenizer.json: decoder"); err != nil {
		return nil, err
	}
	for i, a := range f.AddedTokens {
		if a.ID < 0 {
			return nil, fieldErr(fmt.Sprintf("tokenizer.json: added_tokens[%d].id", i), fmt.Errorf("negative id %d", a.ID))
		}
	}
	t.added = newAddedVocab(f.AddedTokens, t.normalizer)
	t.buildVocab(vocab, f.AddedTokens)
	var cfg configJSON
	if len(bytes.TrimSpace(configJSONData)) > 0 {
		if err := json.Unmarshal(configJSONData, &cfg); err != nil {
			return nil, fmt.Errorf("tokenizer_config.json: %w", err)
		}
	}
	if err := t.resolveSpecial(&f, &cfg); err != nil {
		return nil, err
	}
	if t.chatTemplates, err = parseChatTemplates(cfg.ChatTemplate); err != nil {
		return nil, fmt.Errorf("tokenizer_config.json: chat_template: %w", err)
	}
	t.pool = sync.Pool{New: func() any { return new(scratch) }}
	return t, nil
}

// model turns one pre-token into ids, appending to dst.
type model interface {
	tokenize(word string, dst []int, sc *scratch) ([]int, error)
}

func buildModel(raw json.RawMessage, path string) (model, map[string]int32, error) {
	if isNull(raw) {
		return nil, nil, fieldErr(path, errors.New("missing"))
	}
	var head struct {
		Type   string          `json:"type"`
		Vocab  json.RawMessage `json:"vocab"`
		Merges json.RawMessage `json:"merges"`
		Prefix *string         `json:"continuing_subword_prefix"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, nil, fieldErr(path, err)
	}
	typ := head.Type
	if typ == "" {
		// Untagged models, as the Rust library guesses them.
		v := bytes.TrimSpace(head.Vocab)
		switch {
		case len(v) > 0 && v[0] == '[':
			typ = "Unigram"
		case !isNull(head.Merges):
			typ = "BPE"
		case head.Prefix != nil:
			typ = "WordPiece"
		default:
			typ = "WordLevel"
		}
	}
	switch typ {
	case "BPE":
		var c bpeJSON
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, nil, fieldErr(path, err)
		}
		m, err := buildBPE(&c, path)
		if err != nil {
			return nil, nil, err
		}
		return m, m.vocab, nil
	case "WordPiece":
		m, err := buildWordPiece(raw, path)
		if err != nil {
			return nil, nil, err
		}
		return m, m.vocab, nil
	case "Unigram":
		m, vocab, err := buildUnigram(raw, path)
		if err != nil {
			return nil, nil, err
		}
		return m, vocab, nil
	case "WordLevel":
		var c struct {
			Vocab    map[string]int32 `json:"vocab"`
			UnkToken string           `json:"unk_token"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, nil, fieldErr(path, err)
		}
		return &wordLevelModel{vocab: c.Vocab, unkToken: c.UnkToken}, c.Vocab, nil
	}
	return nil, nil, fieldErr(path+".type", fmt.Errorf("%w: model %q", ErrUnsupported, typ))
}

// buildVocab fills the id↔token tables: added tokens take precedence over
// the model vocabulary, as in the Rust library.
func (t *Tokenizer) buildVocab(vocab map[string]int32, added []addedToken) {
	maxID := -1
	for _, id := range vocab {
		maxID = max(maxID, int(id))
	}
	for _, a := range added {
		maxID = max(maxID, a.ID)
	}
	t.idToToken = make([]string, maxID+1)
	t.known = make([]bool, maxID+1)
	// The model's own map serves TokenToID; only added tokens get a map of
	// their own (the vocabularies are large).
	t.vocab = vocab
	t.addedIDs = make(map[string]int, len(added))
	for tok, id := range vocab {
		if id >= 0 {
			t.idToToken[id], t.known[id] = tok, true
		}
	}
	t.special = make([]bool, maxID+1)
	for _, a := range added {
		t.idToToken[a.ID], t.known[a.ID] = a.Content, true
		t.addedIDs[a.Content] = a.ID
		t.special[a.ID] = a.Special
	}
}

// readSpecial resolves the special tokens and vocabulary size from the
// files alone, without building the pipeline: for backends other than this
// package's own.
func readSpecial(tokenizerJSON, configJSONData []byte) (SpecialTokens, int, error) {
	var f fileJSON
	if err := json.Unmarshal(tokenizerJSON, &f); err != nil {
		return SpecialTokens{}, 0, fmt.Errorf("tokenizer.json: %w", err)
	}
	var m struct {
		Vocab    json.RawMessage `json:"vocab"`
		UnkToken json.RawMessage `json:"unk_token"`
		UnkID    *int            `json:"unk_id"`
	}
	if err := json.Unmarshal(f.Model, &m); err != nil {
		return SpecialTokens{}, 0, fmt.Errorf("tokenizer.json: model: %w", err)
	}
	vocab := map[string]int32{}
	if v := bytes.TrimSpace(m.Vocab); len(v) > 0 && v[0] == '[' {
		// Unigram: [[piece, score], ...], ids are positions.
		var pieces [][2]json.RawMessage
		if err := json.Unmarshal(v, &pieces); err != nil {
			return SpecialTokens{}, 0, fmt.Errorf("tokenizer.json: model.vocab: %w", err)
		}
		for i, p := range pieces {
			var s string
			if json.Unmarshal(p[0], &s) == nil {
				vocab[s] = int32(i)
			}
		}
	} else if len(v) > 0 {
		if err := json.Unmarshal(v, &vocab); err != nil {
			return SpecialTokens{}, 0, fmt.Errorf("tokenizer.json: model.vocab: %w", err)
		}
	}
	t := &Tokenizer{}
	t.buildVocab(vocab, f.AddedTokens)
	// The post-processor names BOS/EOS when the config does not; one this
	// package cannot build just leaves them to the config.
	t.post, _ = buildPostProcessor(f.PostProcessor, "tokenizer.json: post_processor")
	var cfg configJSON
	if len(bytes.TrimSpace(configJSONData)) > 0 {
		if err := json.Unmarshal(configJSONData, &cfg); err != nil {
			return SpecialTokens{}, 0, fmt.Errorf("tokenizer_config.json: %w", err)
		}
	}
	if isNull(cfg.UNK) && !isNull(m.UnkToken) {
		cfg.UNK = m.UnkToken
	}
	if err := t.resolveSpecial(&f, &cfg); err != nil {
		return SpecialTokens{}, 0, err
	}
	return t.specialTokens, t.VocabSize(), nil
}

// tokenString reads a special token entry of tokenizer_config.json: a
// string, an AddedToken object with "content", or null.
func tokenString(raw json.RawMessage) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var o struct {
		Content string `json:"content"`
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		return "", err
	}
	return o.Content, nil
}

func (t *Tokenizer) resolveSpecial(f *fileJSON, cfg *configJSON) error {
	var names [4]string
	for i, r := range []json.RawMessage{cfg.BOS, cfg.EOS, cfg.PAD, cfg.UNK} {
		s, err := tokenString(r)
		if err != nil {
			return fmt.Errorf("tokenizer_config.json: %s: %w", [4]string{"bos_token", "eos_token", "pad_token", "unk_token"}[i], err)
		}
		names[i] = s
	}
	// Fall back on what tokenizer.json itself says.
	if t.post != nil && (names[0] == "" || names[1] == "") {
		bos, eos := t.post.bosEOS()
		if names[0] == "" {
			names[0] = bos
		}
		if names[1] == "" {
			names[1] = eos
		}
	}
	if names[2] == "" && f.Padding != nil {
		names[2] = f.Padding.PadToken
	}
	if names[3] == "" {
		switch m := t.model.(type) {
		case *bpeModel:
			names[3] = m.unkToken
		case *wordPieceModel:
			names[3] = m.unkToken
		case *wordLevelModel:
			names[3] = m.unkToken
		case *unigramModel:
			if m.unkID >= 0 {
				names[3] = t.idToToken[m.unkID]
			}
		}
	}
	id := func(s string) int {
		if s == "" {
			return -1
		}
		if v, ok := t.TokenToID(s); ok {
			return v
		}
		return -1
	}
	t.specialTokens = SpecialTokens{
		BOS: id(names[0]), EOS: id(names[1]), PAD: id(names[2]), UNK: id(names[3]),
		BOSToken: names[0], EOSToken: names[1], PADToken: names[2], UNKToken: names[3],
	}
	return nil
}

// readFiles reads tokenizer.json at path (a file, or a directory holding
// it) and the tokenizer_config.json beside it (nil when absent), and
// returns the directory they are in.
func readFiles(path string) (data, cfg []byte, dir string, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, nil, "", fmt.Errorf("tokenizer: %w", err)
	}
	file, dir := path, filepath.Dir(path)
	if fi.IsDir() {
		file, dir = filepath.Join(path, "tokenizer.json"), path
	}
	if data, err = os.ReadFile(file); err != nil {
		return nil, nil, "", fmt.Errorf("tokenizer: %w", err)
	}
	cfg, err = os.ReadFile(filepath.Join(dir, "tokenizer_config.json"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, "", fmt.Errorf("tokenizer: %w", err)
	}
	return data, cfg, dir, nil
}
