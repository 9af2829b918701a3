package tokenizer

import (
	"encoding/json"
	"fmt"
	"hash/maphash"
	"math"
	"strings"
	"sync"
)

// bpeModel is the BPE model of the Rust library: merges are applied by
// rank, lowest first and leftmost among equals, on symbols that start as
// single characters (or bytes, for byte-level vocabularies).
type bpeModel struct {
	vocab map[string]int32
	// merges maps a pair of ids (a<<32|b) to rank<<32|merged id.
	merges       map[uint64]uint64
	unkToken     string
	unkID        int32 // -1 when there is no unk token
	fuseUnk      bool
	byteFallback bool
	ignoreMerges bool
	prefix       string // continuing_subword_prefix
	suffix       string // end_of_word_suffix

	// byteLevel: words are raw bytes and each byte stands for its
	// byte-level alphabet character (see byteLevelPre.encode).
	byteLevel   bool
	rawVocab    map[string]int32 // vocab keyed by raw bytes, for ignore_merges
	byteIDs     [256]int32       // id of each byte's alphabet character, -1 if absent
	fallbackIDs [256]int32       // ids of <0xXX>, -1 if absent

	// wordSep, when set, is a separator (SentencePiece's "▁") that no merge
	// can cross: every token holds it only in a leading run. Long inputs (a
	// whole text, for tokenizers without a pre-tokenizer) are then merged
	// word by word, which is the same result, and cached per word.
	wordSep string

	cache *wordCache
}

// heapThreshold is the word length (in symbols) from which merging uses a
// heap; below it a linear scan over cached pair ranks is faster.
const heapThreshold = 48

const noMerge = math.MaxUint64

func (m *bpeModel) lookupMerge(a, b int32) uint64 {
	if v, ok := m.merges[uint64(uint32(a))<<32|uint64(uint32(b))]; ok {
		return v
	}
	return noMerge
}

// symbolID returns the id of unit u (one character) at the given position
// of a word, with the continuing prefix and end-of-word suffix applied.
func (m *bpeModel) symbolID(u string, first, last bool, buf *[]byte) (int32, bool) {
	if m.prefix == "" && m.suffix == "" {
		id, ok := m.vocab[u]
		return id, ok
	}
	b := (*buf)[:0]
	if !first {
		b = append(b, m.prefix...)
	}
	b = append(b, u...)
	if last {
		b = append(b, m.suffix...)
	}
	*buf = b
	id, ok := m.vocab[string(b)]
	return id, ok
}

func (m *bpeModel) tokenize(word string, dst []int, sc *scratch) ([]int, error) {
	if word == "" {
		return dst, nil
	}
	if m.wordSep != "" && len(word) > 2*len(m.wordSep) {
		return m.tokenizeWords(word, dst, sc)
	}
	return m.tokenizeWord(word, dst, sc)
}

// tokenizeWords cuts word before each separator run that follows other text
// and merges the parts one by one (see wordSep).
func (m *bpeModel) tokenizeWords(word string, dst []int, sc *scratch) ([]int, error) {
	sep := m.wordSep
	start := 0
	for i := 0; i < len(word); {
		if strings.HasPrefix(word[i:], sep) {
			if i > start && !strings.HasSuffix(word[start:i], sep) {
				var err error
				if dst, err = m.tokenizeWord(word[start:i], dst, sc); err != nil {
					return dst, err
				}
				start = i
			}
			i += len(sep)
			continue
		}
		i++
	}
	return m.tokenizeWord(word[start:], dst, sc)
}

func (m *bpeModel) tokenizeWord(word string, dst []int, sc *scratch) ([]int, error) {
	if m.ignoreMerges {
		v := m.vocab
		if m.byteLevel {
			v = m.rawVocab
		}
		if id, ok := v[word]; ok {
			return append(dst, int(id)), nil
		}
	}
	if ids, ok := m.cache.get(word); ok {
		for _, id := range ids {
			dst = append(dst, int(id))
		}
		return dst, nil
	}
	ids, err := m.initialSymbols(word, sc.ids[:0])
	if err != nil {
		return dst, err
	}
	if len(ids) >= heapThreshold {
		ids = m.mergeHeap(ids)
	} else {
		ids = m.mergeScan(ids)
	}
	sc.ids = ids
	m.cache.put(word, ids)
	for _, id := range ids {
		dst = append(dst, int(id))
	}
	return dst, nil
}

// initialSymbols splits word into per-character symbols, applying byte
// fallback and unknown-token fusion as the Rust library's merge_word does.
func (m *bpeModel) initialSymbols(word string, ids []int32) ([]int32, error) {
	plain := m.prefix == "" && m.suffix == ""
	if m.byteLevel && plain {
		allKnown := true
		for i := 0; i < len(word); i++ {
			id := m.byteIDs[word[i]]
			if id < 0 {
				allKnown = false
				break
			}
			ids = append(ids, id)
		}
		if allKnown {
			return ids, nil
		}
		ids = ids[:0]
	}
	var buf []byte
	unkPending := false
	for i := 0; i < len(word); {
		var u string
		var n int
		if m.byteLevel {
			u, n = byteToAlpha[word[i]], 1
		} else {
			_, n = decodeRune(word, i)
			u = word[i : i+n]
		}
		first, last := i == 0, i+n == len(word)
		i += n
		if id, ok := m.symbolID(u, first, last, &buf); ok {
			if unkPending {
				ids = append(ids, m.unkID)
				unkPending = false
			}
			ids = append(ids, id)
			continue
		}
		if m.byteFallback {
			s := u
			if !plain {
				s = string(buf)
			}
			start, ok := len(ids), true
			for k := 0; k < len(s); k++ {
				id := m.fallbackIDs[s[k]]
				if id < 0 {
					ok = false
					break
				}
				ids = append(ids, id)
			}
			if ok {
				// The Rust library does not flush a pending unk here: it
				// is emitted after these bytes, in its own position.
				continue
			}
			ids = ids[:start]
		}
		if m.unkToken == "" {
			continue // no unk token: the character is dropped
		}
		if m.unkID < 0 {
			return nil, fmt.Errorf("%w: unk token %q is not in the vocabulary", ErrEncode, m.unkToken)
		}
		if unkPending && !m.fuseUnk {
			ids = append(ids, m.unkID)
		}
		unkPending = true
	}
	if unkPending {
		ids = append(ids, m.unkID)
	}
	return ids, nil
}

// mergeScan merges short words: ranks[i] caches the merge of ids[i] and
// ids[i+1]; each round picks the lowest rank, leftmost first.
func (m *bpeModel) mergeScan(ids []int32) []int32 {
	n := len(ids)
	if n < 2 {
		return ids
	}
	var rbuf [heapThreshold]uint64
	ranks := rbuf[:n-1]
	for i := 0; i < n-1; i++ {
		ranks[i] = m.lookupMerge(ids[i], ids[i+1])
	}
	for n > 1 {
		best, bestRank := -1, uint64(noMerge)
		for i := 0; i < n-1; i++ {
			if ranks[i] < bestRank {
				best, bestRank = i, ranks[i]
			}
		}
		if best < 0 {
			break
		}
		ids[best] = int32(uint32(bestRank))
		copy(ids[best+1:n-1], ids[best+2:n])
		if best+1 <= n-2 {
			copy(ranks[best+1:n-2], ranks[best+2:n-1])
		}
		n--
		if best > 0 {
			ranks[best-1] = m.lookupMerge(ids[best-1], ids[best])
		}
		if best < n-1 {
			ranks[best] = m.lookupMerge(ids[best], ids[best+1])
		}
	}
	return ids[:n]
}

type bpeSym struct {
	id         int32
	prev, next int32
	dead       bool
}

type mergeEntry struct {
	rank  uint32
	pos   int32
	newID int32
}

func (a mergeEntry) less(b mergeEntry) bool {
	return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos)
}

type mergeHeap []mergeEntry

func (h *mergeHeap) push(e mergeEntry) {
	*h = append(*h, e)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if !s[i].less(s[p]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *mergeHeap) pop() mergeEntry {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	for i := 0; ; {
		l, r, min := 2*i+1, 2*i+2, i
		if l < len(s) && s[l].less(s[min]) {
			min = l
		}
		if r < len(s) && s[r].less(s[min]) {
			min = r
		}
		if min == i {
			break
		}
		s[i], s[min] = s[min], s[i]
		i = min
	}
	*h = s
	return top
}

// mergeHeap merges long words with a priority queue over (rank, position),
// skipping stale entries, exactly as the Rust library's Word::merge_all.
func (m *bpeModel) mergeHeap(ids []int32) []int32 {
	syms := make([]bpeSym, len(ids))
	h := make(mergeHeap, 0, len(ids))
	for i, id := range ids {
		syms[i] = bpeSym{id: id, prev: int32(i - 1), next: int32(i + 1)}
	}
	syms[len(ids)-1].next = -1
	for i := 0; i+1 < len(ids); i++ {
		if v := m.lookupMerge(ids[i], ids[i+1]); v != noMerge {
			h.push(mergeEntry{rank: uint32(v >> 32), pos: int32(i), newID: int32(uint32(v))})
		}
	}
	for len(h) > 0 {
		top := h.pop()
		s := &syms[top.pos]
		if s.dead || s.next < 0 {
			continue
		}
		right := syms[s.next]
		v := m.lookupMerge(s.id, right.id)
		if v == noMerge || int32(uint32(v)) != top.newID {
			continue
		}
		syms[s.next].dead = true
		s.id = top.newID
		s.next = right.next
		if right.next >= 0 {
			syms[right.next].prev = top.pos
		}
		if s.prev >= 0 {
			if v := m.lookupMerge(syms[s.prev].id, s.id); v != noMerge {
				h.push(mergeEntry{rank: uint32(v >> 32), pos: s.prev, newID: int32(uint32(v))})
			}
		}
		if s.next >= 0 {
			if v := m.lookupMerge(s.id, syms[s.next].id); v != noMerge {
				h.push(mergeEntry{rank: uint32(v >> 32), pos: top.pos, newID: int32(uint32(v))})
			}
		}
	}
	out := ids[:0]
	for i := int32(0); i >= 0; i = syms[i].next {
		out = append(out, syms[i].id)
	}
	return out
}

// wordCache memoizes BPE results per word. It is sharded to keep
// EncodeBatch workers from contending, and stops growing when full, like the
// Rust library's cache.
type wordCache struct {
	seed   maphash.Seed
	shards [64]cacheShard
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[string][]int32
}

const (
	cacheShardCap  = 1024
	cacheMaxKeyLen = 256
)

func newWordCache() *wordCache {
	c := &wordCache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = make(map[string][]int32)
	}
	return c
}

func (c *wordCache) shard(k string) *cacheShard {
	return &c.shards[maphash.String(c.seed, k)&63]
}

func (c *wordCache) get(k string) ([]int32, bool) {
	if c == nil || len(k) >= cacheMaxKeyLen {
		return nil, false
	}
	s := c.shard(k)
	s.mu.RLock()
	v, ok := s.m[k]
	s.mu.RUnlock()
	return v, ok
}

func (c *wordCache) put(k string, ids []int32) {
	if c == nil || len(k) >= cacheMaxKeyLen {
		return
	}
	s := c.shard(k)
	s.mu.Lock()
	if len(s.m) < cacheShardCap {
		s.m[strings.Clone(k)] = append([]int32(nil), ids...)
	}
	s.mu.Unlock()
}

// bpeJSON is the model section of a BPE tokenizer.json.
type bpeJSON struct {
	Vocab        map[string]int32 `json:"vocab"`
	Merges       json.RawMessage  `json:"merges"`
	UnkToken     *string          `json:"unk_token"`
	Prefix       *string          `json:"continuing_subword_prefix"`
	Suffix       *string          `json:"end_of_word_suffix"`
	FuseUnk      bool             `json:"fuse_unk"`
	ByteFallback bool             `json:"byte_fallback"`
	IgnoreMerges bool             `json:"ignore_merges"`
	Dropout      *float64         `json:"dropout"`
}

// parseMerges reads merges in either form: ["a b", ...] or [["a","b"], ...].
func parseMerges(raw json.RawMessage, path string) ([][2]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	// Peek at the first element to pick the form without parsing twice.
	form := byte(0)
	seenOpen := false
	for _, c := range raw {
		if c == ' ' || c == '\n' || c == '\t' || c == '\r' {
			continue
		}
		if !seenOpen && c == '[' {
			seenOpen = true
			continue
		}
		form = c
		break
	}
	var out [][2]string
	if form == '[' {
		var pairs [][]string
		if err := json.Unmarshal(raw, &pairs); err != nil {
			return nil, fieldErr(path, err)
		}
		out = make([][2]string, len(pairs))
		for k, p := range pairs {
			if len(p) != 2 {
				return nil, fieldErr(fmt.Sprintf("%s[%d]", path, k), fmt.Errorf("want 2 tokens, got %d", len(p)))
			}
			out[k] = [2]string{p[0], p[1]}
		}
		return out, nil
	}
	var lines []string
	if err := json.Unmarshal(raw, &lines); err != nil {
		return nil, fieldErr(path, err)
	}
	out = make([][2]string, len(lines))
	for k, l := range lines {
		a, b, ok := strings.Cut(l, " ")
		if !ok || strings.Contains(b, " ") {
			return nil, fieldErr(fmt.Sprintf("%s[%d]", path, k), fmt.Errorf("want \"a b\", got %q", l))
		}
		out[k] = [2]string{a, b}
	}
	return out, nil
}

func buildBPE(c *bpeJSON, path string) (*bpeModel, error) {
	if c.Dropout != nil && *c.Dropout > 0 {
		return nil, fieldErr(path+".dropout", fmt.Errorf("%w: BPE dropout %v (encoding would be random)", ErrUnsupported, *c.Dropout))
	}
	m := &bpeModel{
		vocab:        c.Vocab,
		unkID:        -1,
		fuseUnk:      c.FuseUnk,
		byteFallback: c.ByteFallback,
		ignoreMerges: c.IgnoreMerges,
		cache:        newWordCache(),
	}
	if m.vocab == nil {
		m.vocab = map[string]int32{}
	}
	if c.UnkToken != nil {
		m.unkToken = *c.UnkToken
		if id, ok := m.vocab[m.unkToken]; ok {
			m.unkID = id
		}
	}
	if c.Prefix != nil {
		m.prefix = *c.Prefix
	}
	if c.Suffix != nil {
		m.suffix = *c.Suffix
	}
	merges, err := parseMerges(c.Merges, path+".merges")
	if err != nil {
		return nil, err
	}
	m.merges = make(map[uint64]uint64, len(merges))
	for rank, p := range merges {
		a, ok := m.vocab[p[0]]
		if !ok {
			return nil, fieldErr(fmt.Sprintf("%s.merges[%d]", path, rank), fmt.Errorf("token %q is not in the vocabulary", p[0]))
		}
		b, ok := m.vocab[p[1]]
		if !ok {
			return nil, fieldErr(fmt.Sprintf("%s.merges[%d]", path, rank), fmt.Errorf("token %q is not in the vocabulary", p[1]))
		}
		if len(p[1]) < len(m.prefix) {
			return nil, fieldErr(fmt.Sprintf("%s.merges[%d]", path, rank), fmt.Errorf("token %q is shorter than the continuing prefix", p[1]))
		}
		merged := p[0] + p[1][len(m.prefix):]
		id, ok := m.vocab[merged]
		if !ok {
			return nil, fieldErr(fmt.Sprintf("%s.merges[%d]", path, rank), fmt.Errorf("merged token %q is not in the vocabulary", merged))
		}
		// A later duplicate overrides an earlier one, as in a Rust HashMap
		// built from the list.
		m.merges[uint64(uint32(a))<<32|uint64(uint32(b))] = uint64(rank)<<32 | uint64(uint32(id))
	}
	for b := 0; b < 256; b++ {
		m.fallbackIDs[b] = -1
		if id, ok := m.vocab[fmt.Sprintf("<0x%02X>", b)]; ok {
			m.fallbackIDs[b] = id
		}
	}
	if m.separatesWords("▁") {
		m.wordSep = "▁"
	}
	return m, nil
}

// separatesWords reports whether merges can never cross sep: sep is a
// token, every token holds sep only as a leading run, and nothing else
// depends on where a word starts (no prefix or suffix, no ignore_merges).
func (m *bpeModel) separatesWords(sep string) bool {
	if _, ok := m.vocab[sep]; !ok || m.prefix != "" || m.suffix != "" || m.ignoreMerges {
		return false
	}
	for tok := range m.vocab {
		for strings.HasPrefix(tok, sep) {
			tok = tok[len(sep):]
		}
		if strings.Contains(tok, sep) {
			return false
		}
	}
	return true
}

// setByteLevel switches the model to raw-byte input (see byteLevelPre).
func (m *bpeModel) setByteLevel() {
	m.byteLevel = true
	m.wordSep = ""
	for b := 0; b < 256; b++ {
		m.byteIDs[b] = -1
		if id, ok := m.vocab[byteToAlpha[b]]; ok {
			m.byteIDs[b] = id
		}
	}
	if m.ignoreMerges {
		m.rawVocab = make(map[string]int32, len(m.vocab))
		for tok, id := range m.vocab {
			if raw, ok := fromByteAlphabet(tok); ok {
				m.rawVocab[raw] = id
			}
		}
	}
}
