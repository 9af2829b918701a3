package dataset

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/herdml/herd/configs"
)

func TestInspect(t *testing.T) {
	env := newLoadEnv(t, tokOpts{})
	rows := []map[string]any{
		{"instruction": "Name the capital of France.", "output": "Paris."},
		{"instruction": "Translate to French.", "input": "the cat", "output": "le chat"},
		{"instruction": "Broken."},
		{"instruction": "Say a lot.", "output": sentence(3, 200)},
	}
	path := writeJSONL(t, env.dir, "train.jsonl", rows)
	cfg := configs.Default()
	cfg.Dataset = testDataset(func(d *configs.Dataset) { d.Format, d.MaxSeqLen = "instruction", 256 })
	var buf bytes.Buffer
	if err := Inspect(&buf, &cfg, env.tok, path, 2); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		path + ": format instruction, max_seq_len 256, truncation right, packing false",
		"── example 1 · " + path + ":1 · ",
		"### Response:\n⟦Paris.<|endoftext|>⟧\n",
		"── example 2 · " + path + ":2 · ",
		"### Input:\nthe cat\n\n### Response:\n⟦le chat<|endoftext|>⟧\n",
		"rows 4 · examples 3 · malformed 1 · truncated 1 (33.3%)",
		"  malformed: " + path + `:3: field "output" missing`,
		"tokens per example:  min ",
		"no packing: 3 sequences · efficiency ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "example 3") || strings.Contains(out, "\x1b[") {
		t.Errorf("output:\n%s", out)
	}
	// Colours, packing.
	buf.Reset()
	cfg.Dataset.Packing = true
	if err := InspectWith(context.Background(), &buf, &cfg, env.tok, path, InspectOptions{Examples: 1, Color: true}); err != nil {
		t.Fatal(err)
	}
	out = buf.String()
	for _, want := range []string{colorOn + "Paris.<|endoftext|>" + colorOff, "packing: 3 examples in 2 sequences of max_seq_len 256 · efficiency "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestSummarize(t *testing.T) {
	xs := make([]int, 100)
	for i := range xs {
		xs[i] = 100 - i
	}
	if got := summarize(xs); got != "min 1 · mean 50.5 · p50 50 · p95 95 · max 100" {
		t.Errorf("summarize: %s", got)
	}
	if got := summarize([]int{7}); got != "min 7 · mean 7.0 · p50 7 · p95 7 · max 7" {
		t.Errorf("summarize one: %s", got)
	}
}
