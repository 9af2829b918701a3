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
	Label   string  `json:"label"`
	Error   string  `json:"error"`
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
{"id":"g2","instruction":"Count","input":"1 2 3","output":"4 5","references":["4 5","four five"]}
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
		if want := [][]string{{"hello"}, {"4 5", "four five"}}[i]; strings.Join(task.Refs, "|") != strings.Join(want, "|") {
			t.Fatalf("row %d: references %q, want %q", i, task.Refs, want)
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
{"question":"Each animal knew its","choices":["place","dog"],"answer":1}
{"question":"bad","choices":["only one"],"answer":0}
{"question":"Unknown answer","choices":["yes","no"]}
`
	modelDir, data, cfg := setup(t, rows, "scoring.task=multiple_choice", "scoring.metrics=[accuracy]", "scoring.on_row_error=fail")
	_, err := Run(context.Background(), Options{ModelDir: modelDir, Data: data, Out: t.TempDir(), Config: cfg})
	if err == nil || !strings.Contains(err.Error(), ":3:") || !strings.Contains(err.Error(), "choices") {
		t.Fatalf("on_row_error fail, a row with one choice: err = %v, want one naming line 3 and the field", err)
	}
	cfg.Scoring.OnRowError = "record"
	out := t.TempDir()
	res, err := Run(context.Background(), Options{ModelDir: modelDir, Data: data, Out: out, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	preds := readPreds(t, out)
	if len(preds) != 4 {
		t.Fatalf("%d predictions for 4 rows", len(preds))
	}
	if preds[2].Error == "" || !strings.Contains(preds[2].Error, ":3:") || preds[2].Choice != nil {
		t.Fatalf("row 3: %+v, want an error naming line 3 and no choice", preds[2])
	}
	if preds[3].Choice == nil || preds[3].Correct != nil {
		t.Fatalf("row 4 (no answer): %+v, want a choice and no correct field", preds[3])
	}
	correct := 0
	for _, p := range preds[:2] {
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
		t.Fatalf("accuracy %v, %d of 2 correct (rows with an error or no answer do not count)", got, correct)
	}
}

// TestClassification: each label is scored as the continuation of the text
// (joined by a space); the prediction is the label with the lowest summed
// loss, checked against the scorer run on each continuation alone.
func TestClassification(t *testing.T) {
	rows := `{"id":"c1","text":"The herd moved","label":"slowly"}
{"text":"Each animal knew its","label":1}
{"text":"Nothing","labels":["up","down"],"label":"down"}
{"text":"What","label":"sideways"}
`
	modelDir, data, cfg := setup(t, rows, "scoring.task=classification", "scoring.metrics=[accuracy]", "scoring.labels=[slowly,place]")
	out := t.TempDir()
	res, err := Run(context.Background(), Options{ModelDir: modelDir, Data: data, Out: out, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	preds := readPreds(t, out)
	if len(preds) != 4 || !strings.Contains(preds[3].Error, `"sideways"`) {
		t.Fatalf("predictions %+v: want 4, the last an error naming the unknown label", preds)
	}
	tok, _, err := dataset.LoadTokenizer(modelDir)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := engine.NewScorer(modelDir, "", torch.Float32, torch.CPU, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	cases := []struct {
		text   string
		labels []string
		gold   int
	}{{"The herd moved", []string{"slowly", "place"}, 0}, {"Each animal knew its", []string{"slowly", "place"}, 1}, {"Nothing", []string{"up", "down"}, 1}}
	correct := 0
	for i, c := range cases {
		ctx, _ := tok.Encode(c.text, true)
		best, bestLoss := -1, math.Inf(1)
		for k, l := range c.labels {
			whole, _ := tok.Encode(c.text+" "+l, true)
			x := toInt64(whole)
			labels := make([]int64, len(x))
			for j := range labels {
				labels[j] = dataset.IgnoreIndex
				if j >= commonPrefix(whole, ctx) {
					labels[j] = x[j]
				}
			}
			r, err := sc.Losses(engine.Batch{B: 1, S: len(x), IDs: x, Labels: labels})
			if err != nil {
				t.Fatal(err)
			}
			if r[0].Sum < bestLoss {
				best, bestLoss = k, r[0].Sum
			}
		}
		p := preds[i]
		if p.Choice == nil || *p.Choice != best || p.Label != c.labels[best] {
			t.Fatalf("row %d: %+v, want choice %d (%s)", i, p, best, c.labels[best])
		}
		if best == c.gold {
			correct++
		}
	}
	if preds[0].ID != "c1" || preds[1].ID != "1" {
		t.Fatalf("ids %q %q", preds[0].ID, preds[1].ID)
	}
	if got := res.Metrics["accuracy"]; math.Abs(got-float64(correct)/3) > 1e-12 {
		t.Fatalf("accuracy %v, want %d/3", got, correct)
	}
}

// TestRowErrors: an empty row, an over-long row and a malformed line each
// get a prediction with an error naming the line, in input order; the
// metrics count only the good rows; with on_row_error fail the run stops
// at the first one.
func TestRowErrors(t *testing.T) {
	long := strings.Repeat("the herd moved slowly ", 20)
	rows := `{"id":"ok1","text":"The herd moved slowly."}
{"id":"empty","text":""}
{"id":"long","text":"` + long + `"}
{"id":"bad","text":
{"id":"ok2","text":"Nothing moved."}
`
	modelDir, data, cfg := setup(t, rows, "dataset.max_seq_len=32")
	out := t.TempDir()
	res, err := Run(context.Background(), Options{ModelDir: modelDir, Data: data, Out: out, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	preds := readPreds(t, out)
	want := []struct{ id, err string }{{"ok1", ""}, {"empty", ":2:"}, {"long", "max_seq_len is 32"}, {"3", ":4:"}, {"ok2", ""}}
	if len(preds) != len(want) {
		t.Fatalf("%d predictions for %d rows: %+v", len(preds), len(want), preds)
	}
	var sum, n float64
	for i, w := range want {
		p := preds[i]
		if p.ID != w.id || (w.err == "") != (p.Error == "") || !strings.Contains(p.Error, w.err) {
			t.Fatalf("row %d: %+v, want id %s and error containing %q", i, p, w.id, w.err)
		}
		if p.Error == "" {
			sum += p.Loss * float64(p.NTokens)
			n += float64(p.NTokens)
		}
	}
	if got := res.Metrics["loss"]; math.Abs(got-sum/n) > 1e-9 {
		t.Fatalf("loss %v, want the token-weighted mean of the good rows %v", got, sum/n)
	}
	cfg.Scoring.OnRowError = "fail"
	_, err = Run(context.Background(), Options{ModelDir: modelDir, Data: data, Out: t.TempDir(), Config: cfg})
	if err == nil || !strings.Contains(err.Error(), ":2:") {
		t.Fatalf("on_row_error fail: err = %v, want one naming line 2", err)
	}
}
