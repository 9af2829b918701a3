package tests

import (
	"encoding/csv"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestTrainWritesMetricsFiles: `herd train` appends every step to
// output_dir/metrics/train.{jsonl,csv}, the files notebooks plot, and with
// --log-format json prints one record per step whatever --log-level is.
func TestTrainWritesMetricsFiles(t *testing.T) {
	modelDir, dataDir := initTiny(t)
	out := filepath.Join(t.TempDir(), "run")
	r := herd(t, nil, "--log-format", "json", "train", "../configs/tiny.yaml", "--set", "model.path="+modelDir,
		"--set", "dataset.train="+filepath.Join(dataDir, "train.jsonl"), "--set", "dataset.eval="+filepath.Join(dataDir, "eval.jsonl"),
		"--set", "output_dir="+out, "--set", "training.max_steps=5", "--set", "training.eval_every=0", "--set", "training.checkpoint_every=0")
	if r.code != 0 {
		t.Fatalf("train: exit %d", r.code)
	}
	if n := strings.Count(r.stderr, `"msg":"step"`); n != 5 {
		t.Fatalf("%d JSON step records on stderr, want 5:\n%s", n, r.stderr)
	}
	rows := readCSV(t, filepath.Join(out, "metrics", "train.csv"))
	if len(rows) != 6 || rows[0][0] != "step" || rows[5][0] != "5" {
		t.Fatalf("train.csv has %d rows (want header + 5): %v", len(rows), rows)
	}
	// dataset.eval is the default scoring data: the job scored it with the
	// final adapter after training.
	if p, err := os.ReadFile(filepath.Join(out, "scoring", "predictions.jsonl")); err != nil || strings.Count(string(p), "\n") != 5 {
		t.Fatalf("scoring after training: %q (err %v)", p, err)
	}
	jl, err := os.ReadFile(filepath.Join(out, "metrics", "train.jsonl"))
	if err != nil || strings.Count(string(jl), "\n") != 5 || !strings.Contains(string(jl), `"loss"`) {
		t.Fatalf("train.jsonl: %q (err %v)", jl, err)
	}
}

// TestTrainEvalEvery: with training.eval_every 2, `herd train` evaluates the
// eval set after steps 2, 4 and the last; the last evaluation's loss is the
// token-weighted loss `herd score` computes with the final adapter, an
// independent path (its own reading of the rows, batching and merge).
func TestTrainEvalEvery(t *testing.T) {
	modelDir, dataDir := initTiny(t)
	out := filepath.Join(t.TempDir(), "run")
	evalFile := filepath.Join(dataDir, "eval.jsonl")
	r := herd(t, nil, "train", "../configs/tiny.yaml", "--set", "model.path="+modelDir,
		"--set", "dataset.train="+filepath.Join(dataDir, "train.jsonl"), "--set", "dataset.eval="+evalFile,
		"--set", "output_dir="+out, "--set", "training.max_steps=5", "--set", "training.eval_every=2", "--set", "training.checkpoint_every=0",
		// No row of the eval set is cut: herd score never truncates.
		"--set", "dataset.max_seq_len=512")
	if r.code != 0 {
		t.Fatalf("train: exit %d", r.code)
	}
	if n := strings.Count(r.stderr+r.stdout, "eval after step"); n != 3 {
		t.Fatalf("%d eval lines in the output, want 3:\n%s", n, r.stderr)
	}
	rows := readCSV(t, filepath.Join(out, "metrics", "eval.csv"))
	if len(rows) != 4 || rows[1][0] != "2" || rows[2][0] != "4" || rows[3][0] != "5" {
		t.Fatalf("eval.csv: %v, want header and steps 2, 4, 5", rows)
	}
	last, err := strconv.ParseFloat(rows[3][3], 64)
	if err != nil {
		t.Fatal(err)
	}
	scored := filepath.Join(t.TempDir(), "score")
	r = herd(t, nil, "score", "--model", modelDir, "--adapter", filepath.Join(out, "checkpoints", "checkpoint-5"), "--data", evalFile, "--out", scored)
	if r.code != 0 {
		t.Fatalf("score: exit %d", r.code)
	}
	raw, err := os.ReadFile(filepath.Join(scored, "metrics.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Metrics map[string]float64 `json:"metrics"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if want := m.Metrics["loss"]; math.Abs(last-want) > 1e-5*want {
		t.Fatalf("eval loss after the last step %v, herd score with the final adapter %v", last, want)
	}
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return rows
}
