package scoring

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"reflect"
	"sync"
	"testing"
)

func TestAccumulatorLossTokenWeighted(t *testing.T) {
	a := NewAccumulator(TaskLoss, nil)
	a.AddBatch([]Prediction{
		{Index: 0, LossSum: 2, Tokens: 4},
		{Index: 1, LossSum: 3, Tokens: 1},
		{Index: 2, Error: "row is empty"},
		{Index: 3, Tokens: 0},
	})
	r := a.Result()
	// Token-weighted: (2+3)/(4+1) = 1, not the mean of row means (0.5+3)/2.
	near(t, "loss", r.Metrics[MetricLoss], 1, 0)
	near(t, "perplexity", r.Metrics[MetricPerplexity], math.E, 1e-15)
	if r.Counts != (Counts{Rows: 4, RowsWithErrors: 1, Tokens: 5}) {
		t.Errorf("counts %+v", r.Counts)
	}
	if len(NewAccumulator(TaskLoss, nil).Result().Metrics) != 0 {
		t.Error("metrics without any token")
	}
}

func TestAccumulatorGenerate(t *testing.T) {
	a := NewAccumulator(TaskGenerate, []string{"exact_match", "f1", "rouge_l", "bleu", "accuracy"})
	for i, h := range readmeHyps {
		a.Add(&Prediction{Index: int64(i), Output: h, Refs: readmeRefs[i]})
	}
	a.Add(&Prediction{Index: 3, Output: "ignored", Error: "prompt too long"})
	a.Add(&Prediction{Index: 4, Output: "no references"}) // enters no text metric
	r := a.Result().Metrics
	near(t, "bleu", r[MetricBLEU], 48.530827, 1e-6)
	// Row 1 matches exactly; rows 2 and 3 do not.
	near(t, "exact_match", r[MetricExactMatch], 1.0/3, 1e-15)
	near(t, "exact_match_raw", r[MetricExactMatchRaw], 1.0/3, 1e-15)
	near(t, "accuracy", r[MetricAccuracy], 1.0/3, 1e-15)
	wantF1 := (1 + TokenF1(readmeHyps[1], readmeRefs[1]) + TokenF1(readmeHyps[2], readmeRefs[2])) / 3
	near(t, "f1", r[MetricF1], wantF1, 1e-15)
	// By hand, row 3 against "The man bit him first.": tokens [man had just
	// bitten him] vs [man bit him first] after normalisation: common {man, him},
	// P = 2/5, R = 2/4, F = 4/9; against "The man had bitten the dog." [man
	// had bitten dog]: common {man had bitten}, P = 3/5, R = 3/4, F = 2/3.
	near(t, "f1 row 3", TokenF1(readmeHyps[2], readmeRefs[2]), 2.0/3, 1e-15)
	wantRouge := (1 + RougeLMulti(readmeRefs[1], readmeHyps[1]).FMeasure + RougeLMulti(readmeRefs[2], readmeHyps[2]).FMeasure) / 3
	near(t, "rouge_l", r[MetricRougeL], wantRouge, 1e-15)
}

func TestAccumulatorChoice(t *testing.T) {
	a := NewAccumulator(TaskMultipleChoice, []string{"accuracy"})
	rows := []Prediction{
		// Unnormalised: choice 1 (loss 1). Per character: 2, 0.1, 3 → 1. Gold 1.
		{Index: 0, ChoiceLoss: []float64{2, 1, 3}, ChoiceLen: []int{1, 10, 1}, Gold: 1},
		// Unnormalised: 0. Per character: 1, 0.2 → 1. Gold 1.
		{Index: 1, ChoiceLoss: []float64{1, 2}, ChoiceLen: []int{1, 10}, Gold: 1},
		// No gold: no accuracy.
		{Index: 2, ChoiceLoss: []float64{1, 2}, ChoiceLen: []int{1, 10}, Gold: NoChoice},
		// Given choice, no losses: counts for accuracy only.
		{Index: 3, Choice: 2, ChoiceNorm: NoChoice, Gold: 2},
	}
	a.AddBatch(rows)
	r := a.Result().Metrics
	near(t, "accuracy", r[MetricAccuracy], 2.0/3, 1e-15)
	near(t, "accuracy_norm", r[MetricAccuracyNorm], 1, 0)
	if rows[1].Choice != 0 || rows[1].ChoiceNorm != 1 {
		t.Errorf("resolve: %d %d", rows[1].Choice, rows[1].ChoiceNorm)
	}
	p := Prediction{ChoiceLoss: []float64{math.NaN(), 3, 3}}
	p.Resolve()
	if p.Choice != 1 || p.ChoiceNorm != NoChoice {
		t.Errorf("NaN or tie: %d %d", p.Choice, p.ChoiceNorm)
	}
}

// randomGenerate makes generate predictions with random text.
func randomGenerate(rng *rand.Rand, n int) []Prediction {
	words := []string{"the", "a", "cat", "dog", "sat", "on", "mat", ".", ",", "It's", "3.5", "x-1", "Über", "&amp;"}
	sent := func() string {
		k := rng.Intn(12)
		s := ""
		for i := 0; i < k; i++ {
			if i > 0 {
				s += " "
			}
			s += words[rng.Intn(len(words))]
		}
		return s
	}
	ps := make([]Prediction, n)
	for i := range ps {
		ps[i] = Prediction{Index: int64(i), Output: sent(), LossSum: rng.Float64() * 10, Tokens: rng.Intn(20)}
		for k := rng.Intn(3); k >= 0; k-- {
			ps[i].Refs = append(ps[i].Refs, sent())
		}
		if rng.Intn(20) == 0 {
			ps[i].Error = "boom"
		}
	}
	return ps
}

func TestAccumulatorMergeExactAnyOrder(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	ps := randomGenerate(rng, 2000)
	metrics := []string{"loss", "perplexity", "exact_match", "f1", "rouge_l", "bleu"}
	one := NewAccumulator(TaskGenerate, metrics)
	for i := range ps {
		one.Add(&ps[i])
	}
	want := one.Result()
	for trial := 0; trial < 3; trial++ {
		rng.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
		total := NewAccumulator(TaskGenerate, metrics)
		var wg sync.WaitGroup
		for lo := 0; lo < len(ps); lo += 97 {
			batch := ps[lo:min(lo+97, len(ps))]
			wg.Add(1)
			go func() {
				defer wg.Done()
				b := NewAccumulator(TaskGenerate, metrics)
				b.AddBatch(batch)
				// Round-trip through JSON, as spool files do.
				data, err := json.Marshal(b)
				if err != nil {
					t.Error(err)
					return
				}
				var c Accumulator
				if err := json.Unmarshal(data, &c); err != nil {
					t.Error(err)
					return
				}
				total.Merge(&c)
			}()
		}
		wg.Wait()
		if got := total.Result(); !reflect.DeepEqual(got, want) {
			t.Fatalf("merged in another order:\n%+v\nwant\n%+v", got, want)
		}
	}
}

func TestMarshalRow(t *testing.T) {
	for _, c := range []struct {
		task string
		p    Prediction
		want string
	}{
		{TaskLoss, Prediction{Index: 7, ID: "ex-7", LossSum: 3, Tokens: 2}, `{"id":"ex-7","loss":1.5,"n_tokens":2}`},
		{TaskLoss, Prediction{Index: 7}, `{"id":7,"n_tokens":0}`},
		{TaskLoss, Prediction{Index: 7, LossSum: math.Inf(1), Tokens: 1}, `{"id":7,"n_tokens":1}`},
		{TaskGenerate, Prediction{Index: 1, Output: "", Tokens: 0}, `{"id":1,"n_tokens":0,"output":""}`},
		{TaskMultipleChoice, Prediction{Index: 2, ChoiceLoss: []float64{1, 2}, ChoiceLen: []int{1, 10}, Choice: 0, ChoiceNorm: 1, Gold: 1},
			`{"id":2,"n_tokens":0,"choice":0,"choice_norm":1,"gold":1,"correct":false}`},
		{TaskClassification, Prediction{Index: 3, Choice: 1, Label: "positive", Gold: NoChoice, LossSum: 1, Tokens: 1},
			`{"id":3,"loss":1,"n_tokens":1,"choice":1,"label":"positive"}`},
		{TaskGenerate, Prediction{Index: 4, ID: "q\"4", Output: "x", Error: "prompt longer than the model's 2048 tokens"},
			`{"id":"q\"4","error":"prompt longer than the model's 2048 tokens"}`},
	} {
		got, err := MarshalRow(c.task, &c.p)
		if err != nil || string(got) != c.want {
			t.Errorf("%s %+v:\n got %s (%v)\nwant %s", c.task, c.p, got, err, c.want)
		}
	}
}

func ExampleAccumulator() {
	a := NewAccumulator(TaskLoss, []string{"loss", "perplexity"})
	a.AddBatch([]Prediction{{Index: 0, LossSum: 2, Tokens: 4}, {Index: 1, LossSum: 3, Tokens: 1}})
	r := a.Result()
	fmt.Printf("loss %.4f perplexity %.4f rows %d tokens %d\n", r.Metrics["loss"], r.Metrics["perplexity"], r.Counts.Rows, r.Counts.Tokens)
	// Output: loss 1.0000 perplexity 2.7183 rows 2 tokens 5
}

func TestPredictionWireForm(t *testing.T) {
	var p Prediction
	if err := json.Unmarshal([]byte(`{"index":3,"id":"x","loss_sum":1.5,"tokens":2,"output":"y"}`), &p); err != nil {
		t.Fatal(err)
	}
	if p.Index != 3 || p.ID != "x" || p.Choice != NoChoice || p.ChoiceNorm != NoChoice || p.Gold != NoChoice {
		t.Fatalf("decoded %+v", p)
	}
	in := Prediction{Index: 1, ChoiceLoss: []float64{0.5, 1}, ChoiceLen: []int{2, 3}, Choice: 0, ChoiceNorm: 0, Gold: 0, Refs: []string{"a"}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Prediction
	if err := json.Unmarshal(b, &out); err != nil || !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip %+v (%v), want %+v", out, err, in)
	}
}
