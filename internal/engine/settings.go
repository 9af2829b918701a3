package engine

import (
	"fmt"

	"github.com/herdml/herd/configs"
	"github.com/herdml/herd/internal/torch"
	"github.com/herdml/herd/lora"
)

// ParseDType maps a config dtype name to libtorch's.
func ParseDType(name string) (torch.DType, error) {
	switch name {
	case "float32":
		return torch.Float32, nil
	case "bfloat16":
		return torch.BFloat16, nil
	case "float16":
		return torch.Float16, nil
	}
	return 0, fmt.Errorf("dtype %q: want float32, bfloat16 or float16", name)
}

// SettingsFromConfig turns a run config into engine settings for one
// device; totalSteps sizes the learning-rate schedule.
func SettingsFromConfig(cfg *configs.Config, dev torch.Device, totalSteps int) (Settings, error) {
	dt, err := ParseDType(cfg.Model.DType)
	if err != nil {
		return Settings{}, fmt.Errorf("model.dtype: %w", err)
	}
	t := cfg.Training
	warmup := t.WarmupSteps
	if t.WarmupRatio > 0 {
		warmup = int(t.WarmupRatio * float64(totalSteps))
	}
	set := Settings{
		DType: dt, Device: dev,
		LoRA: lora.Config{R: cfg.LoRA.R, Alpha: cfg.LoRA.Alpha, Dropout: cfg.LoRA.Dropout,
			TargetModules: cfg.LoRA.Modules(), RSLoRA: cfg.LoRA.RSLoRA},
		Schedule:    Schedule{Kind: t.Scheduler, LR: t.LR, Warmup: warmup, Total: totalSteps},
		AdamW:       torch.AdamWConfig{Beta1: t.AdamBeta1, Beta2: t.AdamBeta2, Eps: t.AdamEps, WeightDecay: t.WeightDecay},
		MaxGradNorm: t.MaxGradNorm,
		Seed:        uint64(t.Seed),
		Threads:     t.Threads,

		Checkpointing: cfg.Model.GradientCheckpointing,
	}
	switch cfg.Training.Autocast {
	case "none", "":
	case "bf16":
		set.Autocast = torch.BFloat16
	default:
		return Settings{}, fmt.Errorf("training.autocast: %q: want none or bf16", cfg.Training.Autocast)
	}
	switch cfg.Model.Quantization {
	case "none", "":
	case "nf4":
		set.NewLinear = lora.NF4Factory(cfg.Model.DoubleQuant)
	default:
		return Settings{}, fmt.Errorf("model.quantization: %q: want none or nf4", cfg.Model.Quantization)
	}
	return set, nil
}
