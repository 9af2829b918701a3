package tokenizer

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestUnigram(t *testing.T) {
	// The Rust library's documented example.
	tok := mustParse(t, `{"model":{"type":"Unigram","unk_id":0,"vocab":[["<unk>",0],["a",0],["b",0],["c",0],["d",0],["cd",1],["ab",2],["abc",5],["abcd",10]]}}`, "")
	if got := encode(t, tok, "abcdacdxx", false); !slices.Equal(got, []int{8, 1, 5, 0}) {
		t.Errorf("got %v, want [8 1 5 0]", got)
	}
	if got := encode(t, tok, "", false); len(got) != 0 {
		t.Errorf("empty: %v", got)
	}
	if sp := tok.Special(); sp.UNK != 0 || sp.UNKToken != "<unk>" {
		t.Errorf("unk from unk_id: %+v", sp)
	}
	// Byte fallback replaces an unknown piece when every byte has a token;
	// unknown characters fuse first, so "éz" falls back as a whole.
	fb := mustParse(t, `{"model":{"type":"Unigram","unk_id":0,"byte_fallback":true,"vocab":[["<unk>",0],["a",-1],["<0xC3>",-5],["<0xA9>",-5]]}}`, "")
	if got := encode(t, fb, "aéaé", false); !slices.Equal(got, []int{1, 2, 3, 1, 2, 3}) {
		t.Errorf("byte fallback: %v", got)
	}
	if got := encode(t, fb, "aéz", false); !slices.Equal(got, []int{1, 0}) {
		t.Errorf("byte fallback of a fused unknown: %v", got)
	}
	noUnk := mustParse(t, `{"model":{"type":"Unigram","unk_id":null,"vocab":[["a",0]]}}`, "")
	if _, err := noUnk.Encode("ab", false); err == nil {
		t.Error("unknown character without unk_id encoded")
	}
	if _, err := Parse([]byte(`{"model":{"type":"Unigram","unk_id":5,"vocab":[["a",0]]}}`), nil); err == nil ||
		!strings.Contains(err.Error(), "model.unk_id") {
		t.Errorf("bad unk_id: %v", err)
	}
}

// latticeViterbi is the lattice Viterbi of tokenizers.js (and of the Rust
// library's unoptimized path): each node keeps the best path ending with it,
// choosing its predecessor by comparing path scores after adding its own
// score. The Rust library's default, optimized path (unigramModel) compares
// them before, so where several segmentations score the same up to
// rounding the two can break the tie differently.
func latticeViterbi(m *unigramModel, word string) []int32 {
	type node struct {
		id        int32
		pos, end  int
		score, bt float64
		prev      *node
	}
	n := len(word)
	begin := make([][]*node, n+1)
	endn := make([][]*node, n+1)
	bos := &node{pos: 0, end: 0}
	endn[0] = append(endn[0], bos)
	eos := &node{pos: n, end: n}
	for s := 0; s < n; {
		_, cl := decodeRune(word, s)
		single := false
		for e := s + 1; e <= n; e++ {
			if id, ok := m.pieces[word[s:e]]; ok {
				nd := &node{id: id, pos: s, end: e, score: m.scores[id]}
				if id == m.unkID {
					nd.score = m.unkScore
				}
				begin[s] = append(begin[s], nd)
				endn[e] = append(endn[e], nd)
				if e-s == cl {
					single = true
				}
			}
			if _, more := m.prefixes[word[s:e]]; !more {
				break
			}
		}
		if !single {
			nd := &node{id: m.unkID, pos: s, end: s + cl, score: m.unkScore}
			begin[s] = append(begin[s], nd)
			endn[s+cl] = append(endn[s+cl], nd)
		}
		s += cl
	}
	begin[n] = append(begin[n], eos)
	for pos := 0; pos <= n; pos++ {
		for _, r := range begin[pos] {
			var best *node
			bs := 0.0
			for _, l := range endn[pos] {
				sc := l.bt + r.score
				if best == nil || sc > bs {
					best, bs = l, sc
				}
			}
			if best != nil {
				r.prev, r.bt = best, bs
			}
		}
	}
	var out []int32
	for nd := eos.prev; nd != nil && nd != bos; nd = nd.prev {
		out = append(out, nd.id)
	}
	slices.Reverse(out)
	return out
}

// The reference's Unigram answers are exactly the lattice Viterbi's on the
// whole corpus, and the lines where this package differs from it are the
// ones marked js_differs: ties broken by rounding.
func TestUnigramReferenceIsLatticeViterbi(t *testing.T) {
	dir := ensureOracle(t)
	tok, err := loadShared(oraclePaths(t, dir)["unigram-llama2"])
	if err != nil {
		t.Fatal(err)
	}
	m := tok.model.(*unigramModel)
	corpus, raw := readCorpus(t, filepath.Join(dir, "corpus.jsonl"))
	out := strings.Split(strings.TrimSpace(string(runNode(t, dir, raw, "encode", "unigram-llama2"))), "\n")
	for i, l := range corpus {
		if l.Text == "" || strings.ContainsAny(l.Text, "<[") { // no added tokens: one Metaspace piece
			continue
		}
		var w oracleLine
		if err := json.Unmarshal([]byte(out[i]), &w); err != nil {
			t.Fatal(err)
		}
		word := strings.ReplaceAll(l.Text, " ", "▁")
		if !strings.HasPrefix(word, "▁") {
			word = "▁" + word
		}
		var lattice []int
		for _, id := range latticeViterbi(m, word) {
			if id == m.unkID && len(lattice) > 0 && lattice[len(lattice)-1] == int(m.unkID) {
				continue // fuse unknowns
			}
			lattice = append(lattice, int(id))
		}
		if !slices.Equal(lattice, w.IDs) {
			t.Errorf("line %d: the lattice Viterbi does not reproduce the reference", i+1)
		}
		_, marked := l.JSDiffers["unigram-llama2"]
		if mine := encode(t, tok, l.Text, false); slices.Equal(mine, w.IDs) == marked {
			t.Errorf("line %d: differs from the reference: %v, marked js_differs: %v", i+1, !marked, marked)
		}
	}
}
