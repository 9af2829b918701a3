package scorerun

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdml/herd/configs"
	"github.com/herdml/herd/dataset"
	"github.com/herdml/herd/internal/engine"
	"github.com/herdml/herd/internal/torch"
	"github.com/herdml/herd/model"
	"github.com/herdml/herd/model/tiny"
)

func setup(t *testing.T, rows string, sets ...string) (modelDir, data string, cfg *configs.Config) {
	t.Helper()
	dir := t.TempDir()
	modelDir = filepath.Join(dir, "model")
	if err := tiny.WriteWithTokenizer(modelDir, tiny.Default()); err != nil {
		t.Fatal(err)
	}
	data = filepath.Join(dir, "rows.jsonl")
	if err := os.WriteFile(data, []byte(rows), 0o644); err != nil {
		t.Fatal(err)
	}
	all := append([]string{"model.path=" + modelDir, "dataset.train=" + data, "model.dtype=float32"}, sets...)
	cfg, err := configs.Parse(nil, "test", all)
	if err != nil {
		t.Fatal(err)
	}
	return modelDir, data, cfg
}

type predRow struct {
	ID      string  `json:"id"`
	Loss    float64 `json:"loss"`
	NTokens int     `json:"n_tokens"`
	Output  string  `json:"output"`
	Choice  *int    `json:"choice"`
	Correct *bool   `json:"correct"`
}

func readPreds(t *testing.T, dir string) []predRow {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "predictions.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []predRow
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var p predRow
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// TestLossOrderAndWeighting: rows of very different lengths come back in
// input order with their ids, each loss is that row's mean over its scored
// tokens, and the set's loss is token-weighted.
func TestLossOrderAndWeighting(t *testing.T) {
	texts := []string{"a", "The herd moved slowly across the valley at dawn, and the old ones walked in front.", "b c", "Nothing moved in the tall grass.", "x"}
	var b strings.Builder
	for i, s := range texts {
		row, _ := json.Marshal(map[string]any{"id": "r" + string(rune('A'+i)), "text": s})
		b.Write(row)
		b.WriteByte('\n')
	}
	modelDir, data, cfg := setup(t, b.String(), "scoring.batch_size=2")
	out := t.TempDir()
	res, err := Run(context.Background(), Options{ModelDir: modelDir, Data: data, Out: out, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	preds := readPreds(t, out)
	if len(preds) != len(texts) {
		t.Fatalf("%d predictions for %d rows", len(preds), len(texts))
	}
	sc, err := engine.NewScorer(modelDir, "", torch.Float32, torch.CPU, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	tok, _, err := dataset.LoadTokenizer(modelDir)
	if err != nil {
		t.Fatal(err)
	}
	var sum, n float64
	for i, p := range preds {
		if want := "r" + string(rune('A'+i)); p.ID != want {
			t.Fatalf("row %d has id %q, want %q (input order lost)", i, p.ID, want)
		}
		ids, err := tok.Encode(texts[i], true)
		if err != nil {
			t.Fatal(err)
		}
		x := make([]int64, len(ids))
		for j, id := range ids {
			x[j] = int64(id)
		}
		if eos := tok.Special().EOS; eos >= 0 {
			x = append(x, int64(eos))
		}
		alone, err := sc.Losses(engine.Batch{B: 1, S: len(x), IDs: x, Labels: x})
		if err != nil {
			t.Fatal(err)
		}
		if p.NTokens != alone[0].Tokens || math.Abs(p.Loss-alone[0].Sum/float64(alone[0].Tokens)) > 1e-4 {
			t.Errorf("row %d: loss %v over %d tokens; scored alone %v over %d", i, p.Loss, p.NTokens, alone[0].Sum/float64(alone[0].Tokens), alone[0].Tokens)
		}
		sum += p.Loss * float64(p.NTokens)
		n += float64(p.NTokens)
	}
	if got := res.Metrics["loss"]; math.Abs(got-sum/n) > 1e-9 {
		t.Fatalf("metrics loss %v, token-weighted mean of rows %v", got, sum/n)
	}
	if got := res.Metrics["perplexity"]; math.Abs(got-math.Exp(sum/n)) > 1e-6 {
		t.Fatalf("perplexity %v, want exp(loss) %v", got, math.Exp(sum/n))
	}
}

// TestGenerateInstruction: generation continues the instruction prompt and
// writes what the model generates greedily from it.
func TestGenerateInstruction(t *testing.T) {
	rows := `{"id":"g1","instruction":"Say hello","input":"","output":"hello"}
{"id":"g2","instruction":"Count","input":"1 2 3","output":"4 5"}
`
	modelDir, data, cfg := setup(t, rows, "dataset.format=instruction", "scoring.task=generate",
		"scoring.metrics=[exact_match,f1,rouge_l,bleu]", "scoring.generation.max_new_tokens=6")
	out := t.TempDir()
	if _, err := Run(context.Background(), Options{ModelDir: modelDir, Data: data, Out: out, Config: cfg}); err != nil {
		t.Fatal(err)
	}
	preds := readPreds(t, out)
	tok, _, err := dataset.LoadTokenizer(modelDir)
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := Prepare(context.Background(), cfg, tok, data)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := engine.NewScorer(modelDir, "", torch.Float32, torch.CPU, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	for i, task := range tasks {
		if task.Ref != []string{"hello", "4 5"}[i] {
			t.Fatalf("row %d: reference %q", i, task.Ref)
		}
		gen, err := sc.Generate([][]int64{task.Prompt}, model.GenConfig{MaxNewTokens: 6, EOS: []int64{int64(tok.Special().EOS)}})
		if err != nil {
			t.Fatal(err)
		}
		want, _ := tok.Decode(toInts(gen[0]), true)
		if preds[i].Output != want || preds[i].ID != task.ID {
			t.Fatalf("row %d: output %q (id %s), greedy alone %q", i, preds[i].Output, preds[i].ID, want)
		}
	}
}

func TestMultipleChoice(t *testing.T) {
	rows := `{"id":"q1","question":"The herd moved","choices":[" slowly"," quickly"," zebra"],"answer":0}
{"question":"Each animal knew its","choices":[" place"," dog"],"answer":1}
{"question":"bad","choices":["only one"],"answer":0}
`
	modelDir, data, cfg := setup(t, rows, "scoring.task=multiple_choice", "scoring.metrics=[accuracy]")
	_, err := Run(context.Background(), Options{ModelDir: modelDir, Data: data, Out: t.TempDir(), Config: cfg})
	if err == nil || !strings.Contains(err.Error(), ":3:") || !strings.Contains(err.Error(), "choices") {
		t.Fatalf("a row with one choice: err = %v, want one naming line 3 and the field", err)
	}
	good := strings.Join(strings.Split(rows, "\n")[:2], "\n") + "\n"
	if err := os.WriteFile(data, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	res, err := Run(context.Background(), Options{ModelDir: modelDir, Data: data, Out: out, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	preds := readPreds(t, out)
	correct := 0
	for _, p := range preds {
		if p.Choice == nil || p.Correct == nil {
			t.Fatalf("prediction %+v lacks choice/correct", p)
		}
		if *p.Correct {
			correct++
		}
	}
	if preds[0].ID != "q1" || preds[1].ID != "1" {
		t.Fatalf("ids %q, %q; want q1 and the row index 1", preds[0].ID, preds[1].ID)
	}
	if got := res.Metrics["accuracy"]; got != float64(correct)/2 {
		t.Fatalf("accuracy %v, %d of 2 correct", got, correct)
	}
}
