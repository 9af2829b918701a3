package tokenizer

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// benchTexts returns the corpus lines the benchmarks encode: every corpus
// line shorter than 2,000 bytes (the 10k-character stress lines would
// dominate the byte count and measure one pathological word).
func benchTexts(tb testing.TB) []string {
	tb.Helper()
	corpus, _ := readCorpus(tb, filepath.Join(oracleDir(tb), "corpus.jsonl"))
	var texts []string
	for _, l := range corpus {
		if len(l.Text) < 2000 {
			texts = append(texts, l.Text)
		}
	}
	return texts
}

func BenchmarkEncode(b *testing.B) {
	dir := ensureOracle(b)
	paths := oraclePaths(b, dir)
	texts := benchTexts(b)
	n := 0
	for _, t := range texts {
		n += len(t)
	}
	for _, name := range []string{"llama3", "qwen3", "llama2", "bert-base-uncased"} {
		tok, err := loadShared(paths[name])
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(n))
			for i := 0; i < b.N; i++ {
				for _, t := range texts {
					if _, err := tok.Encode(t, false); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
		b.Run(name+"/batch", func(b *testing.B) {
			b.SetBytes(int64(n))
			for i := 0; i < b.N; i++ {
				if _, err := tok.EncodeBatch(texts, false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestEncodeThroughput is the Go half of tests/oracle/tokenizer/bench.sh:
// with HERD_TOKENIZER_BENCH=FILE (JSONL {"text"}) and
// HERD_TOKENIZER_BENCH_NAME=NAME it encodes FILE once to warm up, then once
// timed (best of three), single-threaded and with EncodeBatch, and writes a JSON line to the
// file named by HERD_TOKENIZER_BENCH_OUT. Without the variables it does
// nothing: speed is reported by the script, never asserted by a test.
func TestEncodeThroughput(t *testing.T) {
	file, name, outPath := os.Getenv("HERD_TOKENIZER_BENCH"), os.Getenv("HERD_TOKENIZER_BENCH_NAME"), os.Getenv("HERD_TOKENIZER_BENCH_OUT")
	if file == "" || name == "" || outPath == "" {
		return
	}
	dir := ensureOracle(t)
	tok, err := loadShared(oraclePaths(t, dir)[name])
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var texts []string
	bytes := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var row struct {
			Text string `json:"text"`
		}
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatal(err)
		}
		texts = append(texts, row.Text)
		bytes += len(row.Text)
	}
	tokens := 0
	for _, s := range texts { // warm-up, as the JS side does
		ids, err := tok.Encode(s, false)
		if err != nil {
			t.Fatal(err)
		}
		tokens += len(ids)
	}
	// Best of three passes, as the JS side does.
	single, batch := math.Inf(1), math.Inf(1)
	for rep := 0; rep < 3; rep++ {
		start := time.Now()
		for _, s := range texts {
			if _, err := tok.Encode(s, false); err != nil {
				t.Fatal(err)
			}
		}
		single = min(single, time.Since(start).Seconds())
		start = time.Now()
		if _, err := tok.EncodeBatch(texts, false); err != nil {
			t.Fatal(err)
		}
		batch = min(batch, time.Since(start).Seconds())
	}
	line := fmt.Sprintf(`{"bytes":%d,"tokens":%d,"seconds":%g,"batch_seconds":%g}`+"\n", bytes, tokens, single, batch)
	if err := os.WriteFile(outPath, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
}
