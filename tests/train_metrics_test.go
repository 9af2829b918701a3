package tests

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTrainWritesMetricsFiles: `herd train` appends every step to
// output_dir/metrics/train.{jsonl,csv}, the files notebooks plot.
func TestTrainWritesMetricsFiles(t *testing.T) {
	modelDir, dataDir := initTiny(t)
	out := filepath.Join(t.TempDir(), "run")
	r := herd(t, nil, "train", "../configs/tiny.yaml", "--set", "model.path="+modelDir,
		"--set", "dataset.train="+filepath.Join(dataDir, "train.jsonl"), "--set", "dataset.eval="+filepath.Join(dataDir, "eval.jsonl"),
		"--set", "output_dir="+out, "--set", "training.max_steps=5", "--set", "training.eval_every=0", "--set", "training.checkpoint_every=0")
	if r.code != 0 {
		t.Fatalf("train: exit %d", r.code)
	}
	f, err := os.Open(filepath.Join(out, "metrics", "train.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 6 || rows[0][0] != "step" || rows[5][0] != "5" {
		t.Fatalf("train.csv has %d rows (want header + 5): %v", len(rows), rows)
	}
	jl, err := os.ReadFile(filepath.Join(out, "metrics", "train.jsonl"))
	if err != nil || strings.Count(string(jl), "\n") != 5 || !strings.Contains(string(jl), `"loss"`) {
		t.Fatalf("train.jsonl: %q (err %v)", jl, err)
	}
}
