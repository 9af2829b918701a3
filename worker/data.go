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
		return trainEval{Set: d.Train, eval: d.Eval}, d.Close, nil
	}
}

// trainEval is the training set that also carries the evaluation set.
type trainEval struct {
	*dataset.Set
	eval *dataset.Set
}

func (t trainEval) EvalSet() Data {
	if t.eval == nil || t.eval.Len() == 0 {
		return nil
	}
	return t.eval
}
