package lora

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/herdml/herd/internal/fsutil"
	"github.com/herdml/herd/internal/safetensors"
	"github.com/herdml/herd/internal/torch"
	"github.com/herdml/herd/model"
)

// Merge writes a copy of the Hugging Face model in baseDir to outDir with
// the adapter in adapterDir folded into its weights, W' = W + scaling·B·A,
// in each weight's own dtype: what peft's merge_and_unload saves. Other
// tensors and the config and tokenizer files are copied unchanged; the
// output is sharded when the input was.
func Merge(baseDir, adapterDir, outDir string) error {
	cfg, err := ReadConfig(adapterDir)
	if err != nil {
		return err
	}
	ad, err := safetensors.Open(filepath.Join(adapterDir, WeightsFile))
	if err != nil {
		return fmt.Errorf("merge: %w", err)
	}
	defer ad.Close()
	base, err := safetensors.OpenModel(baseDir)
	if err != nil {
		return fmt.Errorf("merge: %w", err)
	}
	defer base.Close()
	if err := torch.Load(); err != nil {
		return err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return fmt.Errorf("merge: %w", err)
	}
	used := 0
	var out []safetensors.NamedTensor
	var total int64
	for _, name := range base.Names() {
		info, raw, err := base.Tensor(name)
		if err != nil {
			return fmt.Errorf("merge: %w", err)
		}
		total += int64(len(raw))
		prefix, ok := strings.CutSuffix(name, ".weight")
		aKey, bKey := "base_model.model."+prefix+".lora_A.weight", "base_model.model."+prefix+".lora_B.weight"
		if !ok || !ad.Has(aKey) {
			out = append(out, safetensors.NamedTensor{Name: name, DType: info.DType, Shape: info.Shape, Data: raw})
			continue
		}
		merged, err := mergeOne(info, raw, ad, aKey, bKey, cfg.Scaling())
		if err != nil {
			return fmt.Errorf("merge %s: %w", name, err)
		}
		used += 2
		out = append(out, safetensors.NamedTensor{Name: name, DType: info.DType, Shape: info.Shape, Data: merged})
	}
	if want := len(ad.Names()); used != want {
		return fmt.Errorf("merge: %d of the adapter's %d matrices match no weight of %s: wrong base model?", want-used, want, baseDir)
	}
	if files := base.Files(); len(files) > 1 {
		err = safetensors.WriteSharded(outDir, out, total/int64(len(files))+1, nil)
	} else {
		err = safetensors.Write(filepath.Join(outDir, safetensors.SingleFileName), out, map[string]string{"format": "pt"})
	}
	if err != nil {
		return fmt.Errorf("merge: %w", err)
	}
	return copyModelFiles(baseDir, outDir)
}

func mergeOne(info safetensors.Info, raw []byte, ad *safetensors.File, aKey, bKey string, scaling float64) ([]byte, error) {
	dt, err := model.TorchDType(info.DType)
	if err != nil {
		return nil, err
	}
	ai, araw, err := ad.Tensor(aKey)
	if err != nil {
		return nil, err
	}
	bi, braw, err := ad.Tensor(bKey)
	if err != nil {
		return nil, err
	}
	if len(info.Shape) != 2 || len(ai.Shape) != 2 || len(bi.Shape) != 2 ||
		ai.Shape[1] != info.Shape[1] || bi.Shape[0] != info.Shape[0] || ai.Shape[0] != bi.Shape[1] {
		return nil, fmt.Errorf("shapes do not compose: weight %v, A %v, B %v", info.Shape, ai.Shape, bi.Shape)
	}
	s := torch.NewScope()
	defer s.Close()
	load := func(raw []byte, d safetensors.DType, shape []int64) *torch.Tensor {
		if s.Err() != nil {
			return nil
		}
		dt, err := model.TorchDType(d)
		if err != nil {
			s.Fail(err)
			return nil
		}
		t, err := torch.FromBytes(raw, dt, shape...)
		s.Fail(err)
		return s.To(s.Own(t), torch.Float32)
	}
	w := load(raw, info.DType, info.Shape)
	a := load(araw, ai.DType, ai.Shape)
	b := load(braw, bi.DType, bi.Shape)
	merged := s.To(s.Add(w, s.MulScalar(s.Matmul(b, a), scaling)), dt)
	if err := s.Err(); err != nil {
		return nil, err
	}
	return merged.Bytes()
}

// copyModelFiles copies config and tokenizer files next to merged weights.
func copyModelFiles(from, to string) error {
	entries, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || strings.HasSuffix(n, ".safetensors") || n == safetensors.IndexFileName {
			continue
		}
		if !strings.HasSuffix(n, ".json") && !strings.HasSuffix(n, ".model") && !strings.HasSuffix(n, ".txt") {
			continue
		}
		if err := copyFile(filepath.Join(from, n), filepath.Join(to, n)); err != nil {
			return fmt.Errorf("merge: copy %s: %w", n, err)
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return fsutil.Write(dst, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
}
