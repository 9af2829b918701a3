package tests

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestScoreTinyModel is DESIGN.md's contract for `herd score` on an
// init-tiny model: predictions.jsonl in input order with id, loss and
// n_tokens, and metrics.json.
func TestScoreTinyModel(t *testing.T) {
	modelDir, dataDir := initTiny(t)
	out := filepath.Join(t.TempDir(), "scores")
	data := filepath.Join(dataDir, "eval.jsonl")
	r := herd(t, nil, "score", "--model", modelDir, "--data", data, "--out", out)
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	var ids []string
	in, err := os.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	sc := bufio.NewScanner(in)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var row struct{ ID string }
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, row.ID)
	}
	f, err := os.Open(filepath.Join(out, "predictions.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ps := bufio.NewScanner(f)
	i := 0
	for ; ps.Scan(); i++ {
		var p struct {
			ID      string   `json:"id"`
			Loss    *float64 `json:"loss"`
			NTokens int      `json:"n_tokens"`
		}
		if err := json.Unmarshal(ps.Bytes(), &p); err != nil {
			t.Fatal(err)
		}
		if i >= len(ids) || p.ID != ids[i] || p.Loss == nil || *p.Loss <= 0 || p.NTokens <= 0 {
			t.Fatalf("prediction %d: %s", i, ps.Text())
		}
	}
	if i != len(ids) {
		t.Fatalf("%d predictions for %d rows", i, len(ids))
	}
	var m struct {
		Metrics map[string]float64 `json:"metrics"`
	}
	raw, err := os.ReadFile(filepath.Join(out, "metrics.json"))
	if err != nil || json.Unmarshal(raw, &m) != nil || m.Metrics["loss"] <= 0 || m.Metrics["perplexity"] <= 1 {
		t.Fatalf("metrics.json %s (err %v)", raw, err)
	}
}

func TestDatasetInspect(t *testing.T) {
	modelDir, dataDir := initTiny(t)
	r := herd(t, nil, "dataset", "inspect", filepath.Join(dataDir, "train.jsonl"), "--config", "../configs/tiny.yaml",
		"--set", "model.path="+modelDir, "-n", "2")
	if r.code != 0 || !strings.Contains(r.stdout, "example 2") || !strings.Contains(r.stdout, "tokens per example") || !strings.Contains(r.stdout, "⟦") {
		t.Fatalf("inspect: exit %d\n%s", r.code, r.stdout)
	}
	r = herd(t, nil, "dataset", "inspect", filepath.Join(dataDir, "missing.jsonl"), "--config", "../configs/tiny.yaml", "--set", "model.path="+modelDir)
	if r.code != 1 || !strings.Contains(r.stderr, "missing.jsonl") {
		t.Fatalf("missing file: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestScoreFailureExits: a scoring job that fails (here: no data file)
// makes `herd score` exit 1 naming the file, and writes no metrics.json.
func TestScoreFailureExits(t *testing.T) {
	modelDir, _ := initTiny(t)
	out := filepath.Join(t.TempDir(), "scores")
	missing := filepath.Join(t.TempDir(), "missing.jsonl")
	r := herd(t, nil, "score", "--model", modelDir, "--data", missing, "--out", out)
	if r.code != 1 || !strings.Contains(r.stderr, missing) {
		t.Fatalf("exit %d, stderr %q: want 1 and the missing file named", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(out, "metrics.json")); !os.IsNotExist(err) {
		t.Fatalf("metrics.json written for a failed run (stat err %v)", err)
	}
}
