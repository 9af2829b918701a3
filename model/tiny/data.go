package tiny

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/herdml/herd/internal/fsutil"
	"github.com/herdml/herd/model/tinytok"
)

// WriteSampleData writes dir/train.jsonl and dir/eval.jsonl, completion
// rows {"id", "text"} cut from the tiny tokenizer's sample text (one
// paragraph or line group per row, every evalEvery-th row to eval), so
// the demo trains on text the tokenizer knows.
func WriteSampleData(dir string, evalEvery int) (train, eval int, err error) {
	if evalEvery < 2 {
		return 0, 0, fmt.Errorf("tiny data: evalEvery must be >= 2, got %d", evalEvery)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, 0, err
	}
	var trainB, evalB strings.Builder
	n := 0
	for _, para := range strings.Split(tinytok.SampleText, "\n\n") {
		lines := strings.Split(strings.TrimSpace(para), "\n")
		for i := 0; i < len(lines); i += 3 {
			text := strings.TrimSpace(strings.Join(lines[i:min(i+3, len(lines))], "\n"))
			if text == "" {
				continue
			}
			row, err := json.Marshal(map[string]string{"id": fmt.Sprintf("row-%04d", n), "text": text})
			if err != nil {
				return 0, 0, err
			}
			dst := &trainB
			if n%evalEvery == evalEvery-1 {
				dst, eval = &evalB, eval+1
			} else {
				train++
			}
			dst.Write(row)
			dst.WriteByte('\n')
			n++
		}
	}
	if err := fsutil.WriteFile(filepath.Join(dir, "train.jsonl"), []byte(trainB.String())); err != nil {
		return 0, 0, err
	}
	return train, eval, fsutil.WriteFile(filepath.Join(dir, "eval.jsonl"), []byte(evalB.String()))
}
