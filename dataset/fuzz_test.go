package dataset

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/herdml/herd/configs"
)

// FuzzRows feeds arbitrary bytes to every text reader and every format: no
// panic, row errors are *RowError with a position, and every example the
// encoder keeps fits max_seq_len and has a trained token.
func FuzzRows(f *testing.F) {
	for _, s := range []string{
		`{"text": "hello"}` + "\n" + `{"instruction": "a", "output": "b"}`,
		`[{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}]`,
		"text,instruction,output\nhello,a,b\n\"x\ny\",1\n",
		`{"messages": "[{\"role\": \"assistant\", \"content\": \"x\"}]"}`,
		"\uFEFF[1, {\"text\": null}, {}]",
	} {
		f.Add([]byte(s))
	}
	tok := loadTestTokenizer(f, tokOpts{})
	dir := f.TempDir()
	var pipes []*pipeline
	for _, format := range []string{"completion", "instruction", "chat"} {
		d := configs.Default().Dataset
		d.Format, d.MaxSeqLen, d.Truncation = format, 16, TruncateLeft
		p, err := newPipeline(d, tok, Options{})
		if err != nil {
			f.Fatal(err)
		}
		pipes = append(pipes, p)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, name := range []string{"f.jsonl", "f.json", "f.csv"} {
			path := filepath.Join(dir, name)
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			rr, err := OpenRows(path)
			if err != nil {
				continue
			}
			for range 1000 {
				row, err := rr.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					var re *RowError
					if errors.Is(err, ErrBadRow) && (!errors.As(err, &re) || re.Src.File != path) {
						t.Fatalf("row error %v without a position", err)
					}
					if !errors.Is(err, ErrBadRow) {
						break
					}
					continue
				}
				for _, p := range pipes {
					r, err := p.f.render(row)
					if err != nil {
						if !errors.Is(err, ErrBadRow) {
							t.Fatalf("render error %v is not a row error", err)
						}
						continue
					}
					toks, out, err := p.e.encode(r)
					if err != nil {
						continue
					}
					if (out == kept || out == keptTruncated) && (len(toks) > 16 || trainedCount(toks) == 0) {
						t.Fatalf("kept %d tokens, %d trained", len(toks), trainedCount(toks))
					}
				}
			}
			rr.Close()
		}
	})
}
