// Package model owns the transformer: the Llama family (Llama, Mistral,
// Qwen2) read from Hugging Face model directories, its forward pass on
// libtorch through internal/torch, and generation. It knows nothing about
// jobs or the network; LoRA reaches it through the Adapter interface.
package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Config is the part of a Hugging Face config.json the Llama family uses.
type Config struct {
	// Arch is the architecture named in config.json's "architectures".
	Arch                  string       `json:"-"`
	VocabSize             int          `json:"vocab_size"`
	HiddenSize            int          `json:"hidden_size"`
	IntermediateSize      int          `json:"intermediate_size"`
	NumLayers             int          `json:"num_hidden_layers"`
	NumHeads              int          `json:"num_attention_heads"`
	NumKVHeads            int          `json:"num_key_value_heads"`
	HeadDim               int          `json:"head_dim"`
	RMSNormEps            float64      `json:"rms_norm_eps"`
	RopeTheta             float64      `json:"rope_theta"`
	RopeScaling           *RopeScaling `json:"rope_scaling"`
	MaxPositionEmbeddings int          `json:"max_position_embeddings"`
	TieWordEmbeddings     bool         `json:"tie_word_embeddings"`
	// AttentionBias puts biases on q/k/v/o (Llama's attention_bias); Qwen2
	// always has q/k/v biases and no o bias.
	AttentionBias bool     `json:"attention_bias"`
	HiddenAct     string   `json:"hidden_act"`
	TorchDType    string   `json:"torch_dtype"`
	BOSTokenID    *int     `json:"bos_token_id"`
	EOSTokenID    any      `json:"eos_token_id"` // an int or a list of ints
	SlidingWindow *int     `json:"sliding_window"`
	ModelType     string   `json:"model_type"`
	Architectures []string `json:"architectures"`
}

// RopeScaling is config.json's rope_scaling. herd supports Llama 3's
// ("llama3") frequency scaling; "default" or absent means none.
type RopeScaling struct {
	RopeType                      string  `json:"rope_type"`
	Type                          string  `json:"type"` // older spelling of rope_type
	Factor                        float64 `json:"factor"`
	LowFreqFactor                 float64 `json:"low_freq_factor"`
	HighFreqFactor                float64 `json:"high_freq_factor"`
	OriginalMaxPositionEmbeddings int     `json:"original_max_position_embeddings"`
}

// Kind is rope_type or its older name.
func (r *RopeScaling) Kind() string {
	if r == nil {
		return "default"
	}
	if r.RopeType != "" {
		return r.RopeType
	}
	if r.Type != "" {
		return r.Type
	}
	return "default"
}

// Architectures herd can run.
const (
	ArchLlama   = "LlamaForCausalLM"
	ArchMistral = "MistralForCausalLM"
	ArchQwen2   = "Qwen2ForCausalLM"
)

// QKVBias reports whether q/k/v projections carry a bias.
func (c *Config) QKVBias() bool { return c.Arch == ArchQwen2 || c.AttentionBias }

// OBias reports whether the output projection carries a bias.
func (c *Config) OBias() bool { return c.Arch != ArchQwen2 && c.AttentionBias }

// LoadConfig reads dir/config.json, fills Hugging Face's defaults and
// validates it.
func LoadConfig(dir string) (*Config, error) {
	path := filepath.Join(dir, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load model config: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseConfig decodes a config.json body.
func ParseConfig(data []byte) (*Config, error) {
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, err
	}
	if len(c.Architectures) > 0 {
		c.Arch = c.Architectures[0]
	}
	if c.NumKVHeads == 0 {
		c.NumKVHeads = c.NumHeads
	}
	if c.HeadDim == 0 && c.NumHeads > 0 {
		c.HeadDim = c.HiddenSize / c.NumHeads
	}
	if c.RopeTheta == 0 {
		c.RopeTheta = 10000
	}
	if c.RMSNormEps == 0 {
		c.RMSNormEps = 1e-6
	}
	if c.HiddenAct == "" {
		c.HiddenAct = "silu"
	}
	return &c, c.Validate()
}

// Validate reports every problem with the config at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	switch c.Arch {
	case ArchLlama, ArchMistral, ArchQwen2:
	default:
		bad("architectures", "%q is not supported (want %s, %s or %s)", c.Arch, ArchLlama, ArchMistral, ArchQwen2)
	}
	for _, f := range []struct {
		name string
		v    int
	}{
		{"vocab_size", c.VocabSize}, {"hidden_size", c.HiddenSize}, {"intermediate_size", c.IntermediateSize},
		{"num_hidden_layers", c.NumLayers}, {"num_attention_heads", c.NumHeads}, {"num_key_value_heads", c.NumKVHeads},
		{"head_dim", c.HeadDim},
	} {
		if f.v <= 0 {
			bad(f.name, "must be > 0, got %d", f.v)
		}
	}
	if c.NumKVHeads > 0 && c.NumHeads%c.NumKVHeads != 0 {
		bad("num_key_value_heads", "%d does not divide num_attention_heads %d", c.NumKVHeads, c.NumHeads)
	}
	if c.HeadDim%2 != 0 {
		bad("head_dim", "must be even for rotary embeddings, got %d", c.HeadDim)
	}
	if c.HiddenAct != "silu" {
		bad("hidden_act", "%q is not supported (want silu)", c.HiddenAct)
	}
	switch k := c.RopeScaling.Kind(); k {
	case "default":
	case "llama3":
		r := c.RopeScaling
		if r.Factor <= 0 || r.LowFreqFactor <= 0 || r.HighFreqFactor <= r.LowFreqFactor || r.OriginalMaxPositionEmbeddings <= 0 {
			bad("rope_scaling", "llama3 needs factor > 0, 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings > 0")
		}
	default:
		bad("rope_scaling", "rope_type %q is not supported (want default or llama3)", k)
	}
	return errors.Join(errs...)
}
