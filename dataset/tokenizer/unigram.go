package tokenizer

import (
	"encoding/json"
	"fmt"
	"math"
)

// unigramModel is the Unigram (SentencePiece) model: the segmentation with
// the highest total piece score, found by Viterbi over every vocabulary
// piece matching at every character position. Characters no piece covers
// become the unk token, scored min_score - 10; consecutive unknowns fuse
// into one. This follows the Rust library's encode_optimized, ties included
// (the earliest start wins).
type unigramModel struct {
	pieces       map[string]int32
	prefixes     map[string]struct{} // every proper prefix of every piece
	scores       []float64
	unkID        int32 // -1 when there is none
	unkScore     float64
	byteFallback bool
	fallbackIDs  [256]int32
	cache        *wordCache
}

// unkPenalty is SentencePiece's kUnkPenalty.
const unkPenalty = 10.0

type bestPath struct {
	score float64
	start int
	id    int32
	set   bool
}

func (m *unigramModel) tokenize(word string, dst []int, sc *scratch) ([]int, error) {
	if word == "" {
		return dst, nil
	}
	if ids, ok := m.cache.get(word); ok {
		for _, id := range ids {
			dst = append(dst, int(id))
		}
		return dst, nil
	}
	n := len(word)
	best := make([]bestPath, n+1)
	best[0].set = true
	for s := 0; s < n; {
		_, cl := decodeRune(word, s)
		if !best[s].set {
			s += cl
			continue
		}
		base := best[s].score
		single := false
		for e := s + 1; e <= n; e++ {
			cand := word[s:e]
			if id, ok := m.pieces[cand]; ok {
				if score := m.scores[id] + base; !best[e].set || score > best[e].score {
					best[e] = bestPath{score: score, start: s, id: id, set: true}
				}
				if e-s == cl {
					single = true
				}
			}
			if _, more := m.prefixes[cand]; !more {
				break
			}
		}
		if !single {
			if m.unkID < 0 {
				return dst, fmt.Errorf("%w: Unigram has no unk_id for %q", ErrEncode, word[s:s+cl])
			}
			if score := m.unkScore + base; !best[s+cl].set || score > best[s+cl].score {
				best[s+cl] = bestPath{score: score, start: s, id: m.unkID, set: true}
			}
		}
		s += cl
	}
	// Walk back, fusing runs of unknown pieces, then map pieces to ids.
	type seg struct {
		start, end int
		id         int32
	}
	var segs []seg
	for e := n; e > 0; {
		b := best[e]
		if b.id == m.unkID && len(segs) > 0 && segs[len(segs)-1].id == m.unkID {
			segs[len(segs)-1].start = b.start
		} else {
			segs = append(segs, seg{b.start, e, b.id})
		}
		e = b.start
	}
	ids := sc.ids[:0]
	for k := len(segs) - 1; k >= 0; k-- {
		g := segs[k]
		piece := word[g.start:g.end]
		if id, ok := m.pieces[piece]; ok {
			ids = append(ids, id)
			continue
		}
		if m.byteFallback {
			start, ok := len(ids), true
			for i := 0; i < len(piece); i++ {
				if m.fallbackIDs[piece[i]] < 0 {
					ok = false
					break
				}
				ids = append(ids, m.fallbackIDs[piece[i]])
			}
			if ok {
				continue
			}
			ids = ids[:start]
		}
		ids = append(ids, m.unkID)
	}
	sc.ids = ids
	m.cache.put(word, ids)
	for _, id := range ids {
		dst = append(dst, int(id))
	}
	return dst, nil
}

type unigramJSON struct {
	UnkID        *int                 `json:"unk_id"`
	Vocab        [][2]json.RawMessage `json:"vocab"`
	ByteFallback bool                 `json:"byte_fallback"`
}

func buildUnigram(raw json.RawMessage, path string) (*unigramModel, map[string]int32, error) {
	var c unigramJSON
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, nil, fieldErr(path, err)
	}
	m := &unigramModel{
		pieces:       make(map[string]int32, len(c.Vocab)),
		prefixes:     make(map[string]struct{}, 2*len(c.Vocab)),
		scores:       make([]float64, len(c.Vocab)),
		unkID:        -1,
		byteFallback: c.ByteFallback,
		cache:        newWordCache(),
	}
	minScore := math.Inf(1)
	for i, e := range c.Vocab {
		var piece string
		var score float64
		if err := json.Unmarshal(e[0], &piece); err != nil {
			return nil, nil, fieldErr(fmt.Sprintf("%s.vocab[%d][0]", path, i), err)
		}
		if err := json.Unmarshal(e[1], &score); err != nil {
			return nil, nil, fieldErr(fmt.Sprintf("%s.vocab[%d][1]", path, i), err)
		}
		m.pieces[piece] = int32(i) // a later duplicate wins, as in the Rust library's map
		m.scores[i] = score
		minScore = min(minScore, score)
		for k := 1; k < len(piece); k++ {
			m.prefixes[piece[:k]] = struct{}{}
		}
	}
	m.unkScore = minScore - unkPenalty
	if c.UnkID != nil {
		if *c.UnkID < 0 || *c.UnkID >= len(c.Vocab) {
			return nil, nil, fieldErr(path+".unk_id", fmt.Errorf("%d is outside the vocabulary", *c.UnkID))
		}
		m.unkID = int32(*c.UnkID)
	}
	for b := 0; b < 256; b++ {
		m.fallbackIDs[b] = -1
		if id, ok := m.pieces[fmt.Sprintf("<0x%02X>", b)]; ok {
			m.fallbackIDs[b] = id
		}
	}
	return m, m.pieces, nil
}
