package scoring

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math"
	"math/rand"
	"os/exec"
	"strings"
	"testing"
)

// oraclePython is Debian's interpreter; the oracle needs only its standard
// library.
const oraclePython = "/usr/bin/python3"

const metricsOracle = "../tests/oracle/metrics/metrics_ref.py"

// oracleText makes random text that exercises what the Python reference
// programs and the Go port could disagree on: Unicode case, whitespace and
// word characters, articles at odd boundaries, punctuation next to digits,
// HTML entities, and words shared between outputs and references.
func oracleText(rng *rand.Rand) string {
	words := []string{"the", "The", "a", "A", "an", "An", "THE", "cat", "dog", "sat", "mat",
		"Paris", "3.14", "1,000", "x-1", "5-6", "it's", "wasn't", "&quot;", "&amp;", "&lt;b&gt;",
		"<skipped>", "ΟΔΟΣ", "Σ", "σοφός", "İstanbul", "Kelvin\u212a", "Straße", "naïve", "e\u0301", "東京",
		"😀", "«», ", "„quoted“", "’s", "under_score", "a_b", "...", "--", "(x)", "[y]", "{z}", "~`^|\\",
		"end.", ".start", "1.", ".5", "U.S.A.", "Mr.", "co-op", "éa", "aé"}
	seps := []string{" ", " ", " ", "  ", "\t", "\n", "-\n", "\u00a0", "\u2028", "\u3000", "\x1c", "\u0085", "", ".", ",", "'"}
	n := rng.Intn(14)
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 || rng.Intn(4) == 0 {
			b.WriteString(seps[rng.Intn(len(seps))])
		}
		if rng.Intn(8) == 0 {
			// A random code point from the Basic Multilingual Plane (no surrogates).
			r := rune(rng.Intn(0xD000))
			if r < 0x20 && r != '\t' {
				r = 'q'
			}
			b.WriteRune(r)
		} else {
			b.WriteString(words[rng.Intn(len(words))])
		}
	}
	if rng.Intn(6) == 0 {
		b.WriteString(seps[rng.Intn(4)])
	}
	return b.String()
}

func TestOracleMetrics(t *testing.T) {
	if _, err := exec.LookPath(oraclePython); err != nil {
		t.Fatalf("the metrics oracle needs Debian's python3 (apt-get install -y python3): %v", err)
	}
	rng := rand.New(rand.NewSource(11))
	type query map[string]any
	var qs []query
	var check []func(t *testing.T, raw json.RawMessage)
	add := func(q query, f func(t *testing.T, raw json.RawMessage)) {
		qs = append(qs, q)
		check = append(check, f)
	}
	for i := 0; i < 3000; i++ {
		s := oracleText(rng)
		add(query{"op": "normalize", "s": s}, func(t *testing.T, raw json.RawMessage) {
			var r struct{ V string }
			json.Unmarshal(raw, &r)
			if got := NormalizeAnswer(s); got != r.V {
				t.Errorf("NormalizeAnswer(%q) = %q, Python %q", s, got, r.V)
			}
		})
		add(query{"op": "tok13a", "s": s}, func(t *testing.T, raw json.RawMessage) {
			var r struct{ V string }
			json.Unmarshal(raw, &r)
			if got := Tokenize13a(s); got != r.V {
				t.Errorf("Tokenize13a(%q) = %q, Python %q", s, got, r.V)
			}
		})
		pred := oracleText(rng)
		refs := []string{oracleText(rng)}
		for k := rng.Intn(3); k > 0; k-- {
			refs = append(refs, oracleText(rng))
		}
		add(query{"op": "squad", "pred": pred, "refs": refs}, func(t *testing.T, raw json.RawMessage) {
			var r struct {
				EM bool
				F1 float64
			}
			json.Unmarshal(raw, &r)
			if em, f1 := ExactMatch(pred, refs), TokenF1(pred, refs); em != r.EM || f1 != r.F1 {
				t.Errorf("SQuAD(%q, %q) = %v %v, Python %v %v", pred, refs, em, f1, r.EM, r.F1)
			}
		})
		add(query{"op": "rouge", "target": refs[0], "pred": pred}, func(t *testing.T, raw json.RawMessage) {
			var r struct{ P, R, F float64 }
			json.Unmarshal(raw, &r)
			if s := RougeL(refs[0], pred); s.Precision != r.P || s.Recall != r.R || s.FMeasure != r.F {
				t.Errorf("RougeL(%q, %q) = %+v, Python %+v", refs[0], pred, s, r)
			}
		})
	}
	// Corpus BLEU on a few hundred random sentence pairs, in corpora of
	// several sizes, some with several references per sentence.
	for c := 0; c < 40; c++ {
		n := 1 + rng.Intn(300)
		hyps := make([]string, n)
		refs := make([][]string, n)
		for i := range hyps {
			hyps[i] = oracleText(rng)
			refs[i] = []string{oracleText(rng)}
			if c%2 == 1 {
				refs[i] = append(refs[i], oracleText(rng), "")
			}
			if rng.Intn(3) == 0 { // make some n-grams match
				refs[i][0] = hyps[i] + " " + refs[i][0]
			}
		}
		add(query{"op": "bleu", "hyps": hyps, "refs": refs}, func(t *testing.T, raw json.RawMessage) {
			var r struct {
				Score          float64
				Correct, Total []int64
				Sys, Ref       int64
			}
			json.Unmarshal(raw, &r)
			var s BLEUStats
			for i := range hyps {
				s.Add(hyps[i], refs[i], nil)
			}
			got := s.Score(BLEUOptions{})
			if !equalInts(s.Correct, r.Correct) || !equalInts(s.Total, r.Total) || s.SysLen != r.Sys || s.RefLen != r.Ref ||
				math.Abs(got.Score-r.Score) > 1e-9 {
				t.Errorf("corpus of %d: BLEU %v %v/%v %d/%d, Python %v %v/%v %d/%d", len(hyps),
					got.Score, s.Correct, s.Total, s.SysLen, s.RefLen, r.Score, r.Correct, r.Total, r.Sys, r.Ref)
			}
		})
	}

	var in bytes.Buffer
	enc := json.NewEncoder(&in)
	for _, q := range qs {
		if err := enc.Encode(q); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(oraclePython, metricsOracle)
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("oracle: %v\n%s", err, stderr.String())
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	i := 0
	for sc.Scan() {
		if i >= len(check) {
			t.Fatal("oracle answered more lines than asked")
		}
		check[i](t, json.RawMessage(sc.Bytes()))
		i++
		if t.Failed() && i > 50 {
			break
		}
	}
	if i != len(check) && !t.Failed() {
		t.Fatalf("oracle answered %d of %d queries", i, len(check))
	}
}
