// Package tiny writes small random Llama-family models in Hugging Face
// layout (config.json and model.safetensors) for tests and the demo. The
// weights are drawn from a seeded PCG stream in Go, so the same options give
// the same files on every machine; nothing here needs libtorch.
package tiny

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/herdml/herd/internal/safetensors"
	"github.com/herdml/herd/model/tinytok"
)

// Options shape the model. Zero values take the defaults of Default().
type Options struct {
	Arch         string  // "llama", "mistral" or "qwen2"
	Layers       int     // decoder layers
	Hidden       int     // hidden size
	Heads        int     // attention heads
	KVHeads      int     // key/value heads (grouped-query attention when < Heads)
	Intermediate int     // MLP size
	Vocab        int     // vocabulary size (the tokenizer's)
	MaxPositions int     // max_position_embeddings
	RopeTheta    float64 // rotary base
	Llama3Rope   bool    // add Llama 3 rope_scaling
	Tie          bool    // tie_word_embeddings
	AttnBias     bool    // llama/mistral attention_bias (qwen2 always has q/k/v biases)
	Seed         uint64  // weight stream
	// NormNoise perturbs the RMSNorm weights around 1 (Hugging Face
	// initialises them to exactly 1, which would hide a missing multiply
	// from a numerical test).
	NormNoise float64
	// DType of the stored weights: F32 (default), BF16 or F16.
	DType safetensors.DType
	// BOS and EOS are the token ids config.json names (defaults 0 and 1).
	BOS, EOS int
}

// Default is the tiny model of the demo.
func Default() Options {
	return Options{Arch: "llama", Layers: 2, Hidden: 64, Heads: 4, KVHeads: 2, Intermediate: 128, Vocab: 512,
		MaxPositions: 512, RopeTheta: 10000, Tie: true, Seed: 1, DType: safetensors.F32}
}

func (o *Options) fill() {
	d := Default()
	if o.Arch == "" {
		o.Arch = d.Arch
	}
	for _, f := range []struct {
		v   *int
		def int
	}{
		{&o.Layers, d.Layers}, {&o.Hidden, d.Hidden}, {&o.Heads, d.Heads}, {&o.Intermediate, d.Intermediate},
		{&o.Vocab, d.Vocab}, {&o.MaxPositions, d.MaxPositions},
	} {
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if o.KVHeads == 0 {
		o.KVHeads = o.Heads
	}
	if o.RopeTheta == 0 {
		o.RopeTheta = d.RopeTheta
	}
	if o.DType == "" {
		o.DType = safetensors.F32
	}
	if o.BOS == 0 && o.EOS == 0 {
		o.EOS = 1
	}
}

// Validate reports every problem at once.
func (o Options) Validate() error {
	var errs []error
	if o.Arch != "llama" && o.Arch != "mistral" && o.Arch != "qwen2" {
		errs = append(errs, fmt.Errorf("arch %q: want llama, mistral or qwen2", o.Arch))
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"layers", o.Layers}, {"hidden", o.Hidden}, {"heads", o.Heads}, {"kv-heads", o.KVHeads}, {"intermediate", o.Intermediate}, {"vocab", o.Vocab}} {
		if f.v <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be > 0, got %d", f.name, f.v))
		}
	}
	if o.Heads > 0 && o.Hidden%o.Heads != 0 {
		errs = append(errs, fmt.Errorf("hidden %d is not a multiple of heads %d", o.Hidden, o.Heads))
	} else if o.Heads > 0 && (o.Hidden/o.Heads)%2 != 0 {
		errs = append(errs, fmt.Errorf("head size hidden/heads = %d must be even", o.Hidden/o.Heads))
	}
	if o.KVHeads > 0 && o.Heads%o.KVHeads != 0 {
		errs = append(errs, fmt.Errorf("kv-heads %d does not divide heads %d", o.KVHeads, o.Heads))
	}
	switch o.DType {
	case safetensors.F32, safetensors.BF16, safetensors.F16:
	default:
		errs = append(errs, fmt.Errorf("dtype %q: want F32, BF16 or F16", o.DType))
	}
	return errors.Join(errs...)
}

var archNames = map[string][2]string{
	"llama":   {"LlamaForCausalLM", "llama"},
	"mistral": {"MistralForCausalLM", "mistral"},
	"qwen2":   {"Qwen2ForCausalLM", "qwen2"},
}

// Write creates dir with config.json and model.safetensors.
func Write(dir string, o Options) error {
	o.fill()
	if err := o.Validate(); err != nil {
		return fmt.Errorf("tiny model: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	names := archNames[o.Arch]
	dtypeName := map[safetensors.DType]string{safetensors.F32: "float32", safetensors.BF16: "bfloat16", safetensors.F16: "float16"}[o.DType]
	cfg := map[string]any{
		"architectures":           []string{names[0]},
		"model_type":              names[1],
		"vocab_size":              o.Vocab,
		"hidden_size":             o.Hidden,
		"intermediate_size":       o.Intermediate,
		"num_hidden_layers":       o.Layers,
		"num_attention_heads":     o.Heads,
		"num_key_value_heads":     o.KVHeads,
		"head_dim":                o.Hidden / o.Heads,
		"hidden_act":              "silu",
		"max_position_embeddings": o.MaxPositions,
		"rms_norm_eps":            1e-6,
		"rope_theta":              o.RopeTheta,
		"tie_word_embeddings":     o.Tie,
		"torch_dtype":             dtypeName,
		"bos_token_id":            o.BOS,
		"eos_token_id":            o.EOS,
		"initializer_range":       0.02,
		"use_cache":               true,
	}
	if o.Arch != "qwen2" {
		cfg["attention_bias"] = o.AttnBias
	}
	if o.Llama3Rope {
		cfg["rope_scaling"] = map[string]any{
			"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
			"original_max_position_embeddings": 64,
		}
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), append(data, '\n'), 0o644); err != nil {
		return err
	}
	tensors, err := weights(o)
	if err != nil {
		return err
	}
	return safetensors.Write(filepath.Join(dir, "model.safetensors"), tensors, map[string]string{"format": "pt"})
}

// weights draws every tensor: projections and embeddings from N(0, 0.02²)
// as Hugging Face's initializer_range does, norms at 1 (+ NormNoise).
func weights(o Options) ([]safetensors.NamedTensor, error) {
	rng := rand.New(rand.NewPCG(o.Seed, 0x7469_6e79))
	var out []safetensors.NamedTensor
	var err error
	add := func(name string, shape []int64, gen func() float64) {
		if err != nil {
			return
		}
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(gen())
		}
		raw, e := safetensors.FromFloat32(o.DType, v)
		if e != nil {
			err = e
			return
		}
		out = append(out, safetensors.NamedTensor{Name: name, DType: o.DType, Shape: shape, Data: raw})
	}
	normal := func() float64 { return rng.NormFloat64() * 0.02 }
	norm := func() float64 { return 1 + o.NormNoise*(2*rng.Float64()-1) }
	hd, v, in := int64(o.Hidden), int64(o.Vocab), int64(o.Intermediate)
	d := int64(o.Hidden / o.Heads)
	q, kv := int64(o.Heads)*d, int64(o.KVHeads)*d
	qkvBias := o.Arch == "qwen2" || o.AttnBias
	add("model.embed_tokens.weight", []int64{v, hd}, normal)
	for l := 0; l < o.Layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		add(p+"input_layernorm.weight", []int64{hd}, norm)
		add(p+"post_attention_layernorm.weight", []int64{hd}, norm)
		for _, m := range []struct {
			name    string
			out, in int64
			bias    bool
		}{
			{"self_attn.q_proj", q, hd, qkvBias}, {"self_attn.k_proj", kv, hd, qkvBias}, {"self_attn.v_proj", kv, hd, qkvBias},
			{"self_attn.o_proj", hd, q, o.Arch != "qwen2" && o.AttnBias},
			{"mlp.gate_proj", in, hd, false}, {"mlp.up_proj", in, hd, false}, {"mlp.down_proj", hd, in, false},
		} {
			add(p+m.name+".weight", []int64{m.out, m.in}, normal)
			if m.bias {
				add(p+m.name+".bias", []int64{m.out}, normal)
			}
		}
	}
	add("model.norm.weight", []int64{hd}, norm)
	if !o.Tie {
		add("lm_head.weight", []int64{v, hd}, normal)
	}
	return out, err
}

// Std is the standard deviation of the projection weights (Hugging Face's
// initializer_range), exported for tests that check the draw.
const Std = 0.02

// WriteWithTokenizer trains the tiny byte-level BPE on its embedded sample
// text with o.Vocab entries and writes it beside the model, whose
// vocabulary and BOS/EOS ids then follow the tokenizer.
func WriteWithTokenizer(dir string, o Options) error {
	o.fill()
	tok, err := tinytok.Train(tinytok.SampleText, o.Vocab)
	if err != nil {
		return fmt.Errorf("tiny tokenizer: %w", err)
	}
	bos, _ := tok.TokenID(tinytok.BeginOfText)
	eos, _ := tok.TokenID(tinytok.EndOfText)
	o.BOS, o.EOS = bos, eos
	if err := Write(dir, o); err != nil {
		return err
	}
	return tok.WriteFiles(dir)
}
