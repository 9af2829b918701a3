//go:build hftokenizers

package tokenizer

import (
	"strings"
	"testing"
)

// With the hftokenizers tag the oracle tests run against the Rust library
// through the optional backend.
func init() {
	oracleLoad = func(path string) (Encoder, error) { return LoadHF(path) }
	oracleLimit = func(text string) string {
		if strings.IndexByte(text, 0) >= 0 {
			return "NUL bytes cannot cross the C boundary of the hftokenizers backend"
		}
		return ""
	}
}

func TestHFBackendMatchesPureGo(t *testing.T) {
	dir := ensureOracle(t)
	paths := oraclePaths(t, dir)
	for _, name := range []string{"llama3", "bert-base-uncased"} {
		h, err := LoadHF(paths[name])
		if err != nil {
			t.Fatal(err)
		}
		g, err := Load(paths[name])
		if err != nil {
			t.Fatal(err)
		}
		if h.Special() != g.Special() || h.VocabSize() != g.VocabSize() {
			t.Errorf("%s: special %+v / %+v, vocab %d / %d", name, h.Special(), g.Special(), h.VocabSize(), g.VocabSize())
		}
		h.Close()
	}
}
