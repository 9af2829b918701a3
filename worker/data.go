package worker

import (
	"context"
	"fmt"

	"github.com/herdml/herd/configs"
	"github.com/herdml/herd/dataset"
)

// LoadDataset is the production DataLoader: the model's tokenizer and
// dataset.Load with the config's dataset section. cacheDir, when not empty,
// caches the tokenized files.
func LoadDataset(cacheDir string) DataLoader {
	return func(ctx context.Context, cfg *configs.Config, modelDir string) (Data, func() error, error) {
		tok, fp, err := dataset.LoadTokenizer(modelDir)
		if err != nil {
			return nil, nil, fmt.Errorf("tokenizer of %s: %w", modelDir, err)
		}
		o := dataset.Options{Seed: uint64(cfg.Training.Seed)}
		if cacheDir != "" {
			o.CacheDir, o.TokenizerFingerprint = cacheDir, fp
		}
		d, err := dataset.Load(ctx, cfg.Dataset, tok, o)
		if err != nil {
			return nil, nil, err
		}
		return d.Train, d.Close, nil
	}
}
