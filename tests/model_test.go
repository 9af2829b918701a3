package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdml/herd/model/hub/hubtest"
)

// initTiny runs `herd model init-tiny` into a temporary directory.
func initTiny(t *testing.T, extra ...string) (modelDir, dataDir string) {
	t.Helper()
	dir := t.TempDir()
	modelDir, dataDir = filepath.Join(dir, "model"), filepath.Join(dir, "data")
	args := append([]string{"model", "init-tiny", "--out", modelDir, "--sample-data", dataDir}, extra...)
	if r := herd(t, nil, args...); r.code != 0 {
		t.Fatalf("init-tiny: exit %d", r.code)
	}
	return modelDir, dataDir
}

func TestInitTinyThenTokenize(t *testing.T) {
	modelDir, dataDir := initTiny(t, "--arch", "qwen2", "--vocab", "400")
	for _, f := range []string{"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} {
		if _, err := os.Stat(filepath.Join(modelDir, f)); err != nil {
			t.Fatalf("init-tiny did not write %s: %v", f, err)
		}
	}
	var cfg map[string]any
	raw, _ := os.ReadFile(filepath.Join(modelDir, "config.json"))
	if err := json.Unmarshal(raw, &cfg); err != nil || cfg["vocab_size"] != 400.0 || cfg["model_type"] != "qwen2" {
		t.Fatalf("config.json %v (err %v)", cfg, err)
	}
	train, err := os.ReadFile(filepath.Join(dataDir, "train.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := herdCmd(t, "tokenize", "--tokenizer", modelDir)
	cmd.Stdin = strings.NewReader(string(train))
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if want := strings.Count(string(train), "\n"); len(lines) != want {
		t.Fatalf("%d output lines for %d input lines", len(lines), want)
	}
	for i, l := range lines {
		var row struct{ IDs []int }
		if err := json.Unmarshal([]byte(l), &row); err != nil || len(row.IDs) < 2 {
			t.Fatalf("line %d: %q", i+1, l)
		}
		for _, id := range row.IDs {
			if id < 0 || id >= 400 {
				t.Fatalf("line %d: id %d outside the vocabulary", i+1, id)
			}
		}
	}
}

// TestModelPullFromFakeHub runs `herd model pull` against a local fake hub
// serving an init-tiny model, then merges nothing-but-real files from the
// snapshot: the download path users take, without a network.
func TestModelPullFromFakeHub(t *testing.T) {
	modelDir, _ := initTiny(t)
	srv := hubtest.NewServer(t)
	var files []hubtest.File
	for _, f := range []string{"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} {
		data, err := os.ReadFile(filepath.Join(modelDir, f))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, hubtest.File{Path: f, Data: data, LFS: strings.HasSuffix(f, ".safetensors")})
	}
	srv.AddCommit("herd/tiny", "main", files)
	home := t.TempDir()
	env := []string{"HF_ENDPOINT=" + srv.URL, "HF_HOME=" + home, "HF_TOKEN="}
	r := herd(t, env, "model", "pull", "herd/tiny")
	if r.code != 0 {
		t.Fatalf("pull: exit %d", r.code)
	}
	snap := strings.TrimSpace(r.stdout)
	if !strings.HasPrefix(snap, filepath.Join(home, "hub", "models--herd--tiny", "snapshots")) {
		t.Fatalf("snapshot %q is not in the hub cache layout under %s", snap, home)
	}
	for _, f := range files {
		got, err := os.ReadFile(filepath.Join(snap, f.Path))
		if err != nil || string(got) != string(f.Data) {
			t.Fatalf("%s: downloaded copy differs (err %v)", f.Path, err)
		}
	}
	if r := herd(t, env, "model", "pull", "herd/missing"); r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("pull of a missing repo: exit %d, stderr %q", r.code, r.stderr)
	}
}
