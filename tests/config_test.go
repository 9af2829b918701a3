package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigValidateShippedRecipes(t *testing.T) {
	recipes, err := filepath.Glob("../configs/*.yaml")
	if err != nil || len(recipes) < 3 {
		t.Fatalf("recipes %v, err %v", recipes, err)
	}
	for _, r := range recipes {
		if res := herd(t, nil, "config", "validate", r); res.code != 0 {
			t.Errorf("%s: exit %d: %s", r, res.code, res.stderr)
		}
	}
}

// TestConfigValidateReportsEveryMistake is the check: three
// mistakes, three lines with field paths, exit 1.
func TestConfigValidateReportsEveryMistake(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "bad.yaml")
	body := `model:
  path: data/models/tiny
  dtyp: float32
lora:
  r: sixteen
dataset:
  train: data/tiny/train.jsonl
training:
  lr: -1
`
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	res := herd(t, nil, "config", "validate", cfg)
	if res.code != 1 {
		t.Fatalf("exit %d, want 1", res.code)
	}
	for _, want := range []string{
		cfg + ":3: model.dtyp: unknown field",
		cfg + ":5: lora.r: expected an integer",
		cfg + ":9: training.lr: must be > 0",
	} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
	// --set goes through the same checks, and flags may follow the file.
	res = herd(t, nil, "config", "validate", "../configs/tiny.yaml", "--set", "training.lrr=1")
	if res.code != 1 || !strings.Contains(res.stderr, "training.lrr") {
		t.Fatalf("bad --set path: exit %d, stderr %q", res.code, res.stderr)
	}
	res = herd(t, nil, "config", "show", "../configs/tiny.yaml", "--set", "training.lr=0.00005")
	if res.code != 0 || !strings.Contains(res.stdout, "lr: 5e-05") {
		t.Fatalf("config show with --set: exit %d, stdout %q", res.code, res.stdout)
	}
}
