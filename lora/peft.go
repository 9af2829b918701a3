package lora

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/herdml/herd/internal/fsutil"
	"github.com/herdml/herd/internal/safetensors"
	"github.com/herdml/herd/internal/torch"
	"github.com/herdml/herd/model"
)

// PEFT file names.
const (
	ConfigFile  = "adapter_config.json"
	WeightsFile = "adapter_model.safetensors"
)

// PEFTKey is the name PEFT gives an adapter matrix ("A" or "B") when it
// saves a LoraModel wrapping a causal LM, e.g.
// base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight.
func PEFTKey(k Key, matrix string) string {
	return "base_model.model." + model.WeightName(k.Layer, k.Module) + ".lora_" + matrix + ".weight"
}

// peftConfig is adapter_config.json as PEFT writes it for LoRA.
type peftConfig struct {
	PeftType            string             `json:"peft_type"`
	TaskType            string             `json:"task_type"`
	BaseModelNameOrPath string             `json:"base_model_name_or_path"`
	Revision            *string            `json:"revision"`
	R                   int                `json:"r"`
	LoraAlpha           float64            `json:"lora_alpha"`
	LoraDropout         float64            `json:"lora_dropout"`
	TargetModules       json.RawMessage    `json:"target_modules"`
	Bias                string             `json:"bias"`
	FanInFanOut         bool               `json:"fan_in_fan_out"`
	InferenceMode       bool               `json:"inference_mode"`
	InitLoraWeights     bool               `json:"init_lora_weights"`
	UseRSLoRA           bool               `json:"use_rslora"`
	UseDoRA             bool               `json:"use_dora"`
	ModulesToSave       []string           `json:"modules_to_save"`
	LayersToTransform   []int              `json:"layers_to_transform"`
	LayersPattern       *string            `json:"layers_pattern"`
	RankPattern         map[string]int     `json:"rank_pattern"`
	AlphaPattern        map[string]float64 `json:"alpha_pattern"`
}

// Save writes the adapter in PEFT's layout: adapter_config.json and
// adapter_model.safetensors (float32), each written atomically.
func (ad *Adapter) Save(dir, baseModel string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save adapter: %w", err)
	}
	var tensors []safetensors.NamedTensor
	for _, p := range ad.pairs {
		for _, m := range []struct {
			name string
			t    *torch.Tensor
		}{{"A", p.A}, {"B", p.B}} {
			raw, err := bytesF32(m.t)
			if err != nil {
				return fmt.Errorf("save adapter %s: %w", PEFTKey(p.Key, m.name), err)
			}
			tensors = append(tensors, safetensors.NamedTensor{Name: PEFTKey(p.Key, m.name), DType: safetensors.F32, Shape: m.t.Shape(), Data: raw})
		}
	}
	if err := safetensors.Write(filepath.Join(dir, WeightsFile), tensors, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("save adapter: %w", err)
	}
	targets, _ := json.Marshal(ad.cfg.TargetModules)
	cfg := peftConfig{
		PeftType: "LORA", TaskType: "CAUSAL_LM", BaseModelNameOrPath: baseModel,
		R: ad.cfg.R, LoraAlpha: ad.cfg.Alpha, LoraDropout: ad.cfg.Dropout, TargetModules: targets,
		Bias: "none", InferenceMode: true, InitLoraWeights: true, UseRSLoRA: ad.cfg.RSLoRA,
		RankPattern: map[string]int{}, AlphaPattern: map[string]float64{},
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFile(filepath.Join(dir, ConfigFile), append(data, '\n'))
}

func bytesF32(t *torch.Tensor) ([]byte, error) {
	v, err := t.Float32s()
	if err != nil {
		return nil, err
	}
	return safetensors.FromFloat32(safetensors.F32, v)
}

// ReadConfig reads and checks a PEFT adapter_config.json.
func ReadConfig(dir string) (Config, error) {
	cfgPath := filepath.Join(dir, ConfigFile)
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		return Config{}, fmt.Errorf("load adapter: %w", err)
	}
	var pc peftConfig
	if err := json.Unmarshal(data, &pc); err != nil {
		return Config{}, fmt.Errorf("load adapter: %s: %w", cfgPath, err)
	}
	if pc.PeftType != "LORA" {
		return Config{}, fmt.Errorf("load adapter: %s: peft_type %q, want LORA", cfgPath, pc.PeftType)
	}
	if pc.UseDoRA || len(pc.RankPattern) > 0 || len(pc.AlphaPattern) > 0 || len(pc.LayersToTransform) > 0 {
		return Config{}, fmt.Errorf("load adapter: %s: DoRA, rank/alpha patterns and layers_to_transform are not supported", cfgPath)
	}
	var targets []string
	if err := json.Unmarshal(pc.TargetModules, &targets); err != nil {
		return Config{}, fmt.Errorf("load adapter: %s: target_modules must be a list of projection names: %w", cfgPath, err)
	}
	cfg := Config{R: pc.R, Alpha: pc.LoraAlpha, Dropout: pc.LoraDropout, TargetModules: targets, RSLoRA: pc.UseRSLoRA}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("load adapter: %s: %w", cfgPath, err)
	}
	return cfg, nil
}

// Load reads a PEFT LoRA adapter for m. Every expected matrix must be
// present with its shape; an error names the tensor, expected and found.
func Load(dir string, m *model.Model) (*Adapter, error) {
	cfg, err := ReadConfig(dir)
	if err != nil {
		return nil, err
	}
	wPath := filepath.Join(dir, WeightsFile)
	f, err := safetensors.Open(wPath)
	if err != nil {
		return nil, fmt.Errorf("load adapter: %w", err)
	}
	defer f.Close()
	var loadErr error
	ad, err := build(m, cfg, func(k Key, out, in int64) ([]float32, []float32) {
		a := readMatrix(f, PEFTKey(k, "A"), []int64{int64(cfg.R), in}, &loadErr)
		b := readMatrix(f, PEFTKey(k, "B"), []int64{out, int64(cfg.R)}, &loadErr)
		if loadErr != nil { // keep shapes valid so build can finish; the error wins below
			return make([]float32, int64(cfg.R)*in), make([]float32, out*int64(cfg.R))
		}
		return a, b
	})
	if loadErr != nil {
		if ad != nil {
			ad.Free()
		}
		return nil, fmt.Errorf("load adapter %s: %w", wPath, loadErr)
	}
	return ad, err
}

func readMatrix(f *safetensors.File, name string, shape []int64, errp *error) []float32 {
	if *errp != nil {
		return nil
	}
	if !f.Has(name) {
		*errp = fmt.Errorf("tensor %s missing (expected shape %v)", name, shape)
		return nil
	}
	info, raw, err := f.Tensor(name)
	if err != nil {
		*errp = err
		return nil
	}
	if !slices.Equal(info.Shape, shape) {
		*errp = &model.ShapeError{Tensor: name, Expected: shape, Found: info.Shape}
		return nil
	}
	v, err := safetensors.ToFloat32(info.DType, raw)
	if err != nil {
		*errp = fmt.Errorf("tensor %s: %w", name, err)
	}
	return v
}
