package dataset

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herdml/herd/configs"
)

var words = strings.Fields("the quick brown fox jumps over lazy dog capital of France is Paris hello world what you we they")

// sentence returns a deterministic text of n words.
func sentence(i, n int) string {
	var b strings.Builder
	for k := 0; k < n; k++ {
		if k > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[(i*7+k*3)%len(words)])
	}
	return b.String()
}

// writeJSONL writes rows (marshalled) to dir/name.
func writeJSONL(t testing.TB, dir, name string, rows []map[string]any) string {
	t.Helper()
	var b strings.Builder
	for _, r := range rows {
		data, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
		b.WriteByte('\n')
	}
	return writeFile(t, dir, name, b.String())
}

func textRows(n int, length func(i int) int) []map[string]any {
	rows := make([]map[string]any, n)
	for i := range rows {
		rows[i] = map[string]any{"text": sentence(i, length(i))}
	}
	return rows
}

type loadEnv struct {
	tok   Tokenizer
	tokFP string
	dir   string
}

func newLoadEnv(t testing.TB, o tokOpts) *loadEnv {
	t.Helper()
	tokDir := writeTestTokenizer(t, o)
	tok, fp, err := LoadTokenizer(tokDir)
	if err != nil {
		t.Fatal(err)
	}
	return &loadEnv{tok: tok, tokFP: fp, dir: t.TempDir()}
}

func (e *loadEnv) load(t testing.TB, d configs.Dataset, cache bool, seed uint64) (*Data, error) {
	t.Helper()
	o := Options{Seed: seed, Workers: 3}
	if cache {
		o.CacheDir, o.TokenizerFingerprint = filepath.Join(e.dir, "processed"), e.tokFP
	}
	data, err := Load(context.Background(), d, e.tok, o)
	if err == nil {
		t.Cleanup(func() { data.Close() })
	}
	return data, err
}

func (e *loadEnv) mustLoad(t testing.TB, d configs.Dataset, cache bool, seed uint64) *Data {
	t.Helper()
	data, err := e.load(t, d, cache, seed)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// allSequences returns every sequence of a set as ids and labels.
func allSequences(s *Set) [][2][]int64 {
	var out [][2][]int64
	for i := 0; i < s.Len(); i++ {
		ids, labels := s.Sequence(i)
		out = append(out, [2][]int64{ids, labels})
	}
	return out
}

func TestLoadAndBatch(t *testing.T) {
	env := newLoadEnv(t, tokOpts{})
	path := writeJSONL(t, env.dir, "train.jsonl", textRows(10, func(i int) int { return 1 + i }))
	d := testDataset(func(d *configs.Dataset) { d.Train = path })
	data := env.mustLoad(t, d, false, 1)
	if data.Eval != nil || data.Train.Len() != 10 || data.Train.Examples() != 10 || data.Train.Packed() {
		t.Fatalf("sets: eval %v, train %d sequences", data.Eval, data.Train.Len())
	}
	st := data.Files[0]
	if st.Rows != 10 || st.Examples != 10 || st.Skipped != 0 || st.File != path || st.Bytes == 0 || st.Cached {
		t.Errorf("stats %+v", st)
	}
	sp := env.tok.Special()
	var total, targets int
	for i := 0; i < 10; i++ {
		ids, labels := data.Train.Sequence(i)
		want, _ := env.tok.Encode(sentence(i, 1+i), true)
		want = append(want, sp.EOS)
		if fmt.Sprint(ids) != fmt.Sprint(want) {
			t.Fatalf("sequence %d: ids %v, want %v", i, ids, want)
		}
		if labels[0] != IgnoreIndex || labels[1] != ids[1] || labels[len(labels)-1] != int64(sp.EOS) {
			t.Fatalf("sequence %d: labels %v", i, labels)
		}
		if rows := data.Train.Rows(i); !slices.Equal(rows, []int{i}) {
			t.Fatalf("sequence %d: rows %v", i, rows)
		}
		total += len(ids)
		targets += len(ids) - 1 // all but BOS at position 0
	}
	if int64(total) != st.Tokens || int64(targets) != st.TargetTokens {
		t.Errorf("tokens %d target %d, stats %+v", total, targets, st)
	}

	idx := []int{3, 0, 9}
	ids, labels, rows, seqLen := data.Train.Batch(idx)
	if rows != 3 || seqLen != data.Train.SeqLen(9) || len(ids) != rows*seqLen || len(labels) != rows*seqLen {
		t.Fatalf("batch %d×%d, %d ids", rows, seqLen, len(ids))
	}
	for r, i := range idx {
		sid, slab := data.Train.Sequence(i)
		rowIDs, rowLabels := ids[r*seqLen:(r+1)*seqLen], labels[r*seqLen:(r+1)*seqLen]
		if !slices.Equal(rowIDs[:len(sid)], sid) || !slices.Equal(rowLabels[:len(slab)], slab) {
			t.Fatalf("row %d differs from sequence %d", r, i)
		}
		for k := len(sid); k < seqLen; k++ {
			if rowIDs[k] != int64(sp.PAD) || rowLabels[k] != IgnoreIndex {
				t.Fatalf("row %d position %d: pad %d/%d", r, k, rowIDs[k], rowLabels[k])
			}
		}
	}
	if got, want := TargetTokens(labels), data.Train.TargetTokens(idx); got != want {
		t.Errorf("TargetTokens(labels) %d, Set.TargetTokens %d", got, want)
	}
	if got := data.Train.Tokens(idx); got != data.Train.SeqLen(3)+data.Train.SeqLen(0)+data.Train.SeqLen(9) {
		t.Errorf("Tokens %d", got)
	}
	if ids, labels, rows, seqLen := data.Train.Batch(nil); ids != nil || labels != nil || rows != 0 || seqLen != 0 {
		t.Errorf("empty batch")
	}
}

func TestPadID(t *testing.T) {
	for _, c := range []struct {
		o    tokOpts
		want func(Tokenizer) int64
	}{
		{tokOpts{}, func(tok Tokenizer) int64 { return int64(tok.Special().PAD) }},
		{tokOpts{noPAD: true}, func(tok Tokenizer) int64 { return int64(tok.Special().EOS) }},
		{tokOpts{noPAD: true, noEOS: true}, func(Tokenizer) int64 { return 0 }},
	} {
		env := newLoadEnv(t, c.o)
		path := writeJSONL(t, env.dir, "train.jsonl", textRows(2, func(i int) int { return 2 + 5*i }))
		data := env.mustLoad(t, testDataset(func(d *configs.Dataset) { d.Train = path }), false, 1)
		ids, _, _, seqLen := data.Train.Batch([]int{0, 1})
		if got := data.Train.PadID(); got != c.want(env.tok) || ids[seqLen-1] != got {
			t.Errorf("%+v: pad %d, want %d", c.o, got, c.want(env.tok))
		}
	}
}

func TestPacking(t *testing.T) {
	env := newLoadEnv(t, tokOpts{})
	lengths := func(i int) int { return 1 + (i*5)%13 }
	path := writeJSONL(t, env.dir, "train.jsonl", textRows(60, lengths))
	const maxLen = 40
	d := testDataset(func(d *configs.Dataset) { d.Train, d.Packing, d.MaxSeqLen = path, true, maxLen })
	packed := env.mustLoad(t, d, false, 5)
	d.Packing = false
	plain := env.mustLoad(t, d, false, 5)
	s := packed.Train
	if !s.Packed() || s.Examples() != 60 || s.Len() >= 60 {
		t.Fatalf("packed %v: %d sequences of %d examples", s.Packed(), s.Len(), s.Examples())
	}
	// Every example appears exactly once, with its tokens and labels, the
	// first label of each masked.
	seen := map[int]bool{}
	tokens := 0
	for i := 0; i < s.Len(); i++ {
		ids, labels := s.Sequence(i)
		if len(ids) > maxLen {
			t.Fatalf("sequence %d: %d tokens > %d", i, len(ids), maxLen)
		}
		tokens += len(ids)
		k := 0
		for _, row := range s.Rows(i) {
			if seen[row] {
				t.Fatalf("row %d packed twice", row)
			}
			seen[row] = true
			eids, elabels := plain.Train.Sequence(row)
			if !slices.Equal(ids[k:k+len(eids)], eids) || !slices.Equal(labels[k:k+len(eids)], elabels) || labels[k] != IgnoreIndex {
				t.Fatalf("sequence %d: example of row %d differs", i, row)
			}
			k += len(eids)
		}
		if k != len(ids) {
			t.Fatalf("sequence %d: %d tokens from its examples, %d in it", i, k, len(ids))
		}
		// Greedy: the next sequence's first example did not fit here.
		if i+1 < s.Len() {
			next := s.Rows(i + 1)[0]
			if len(ids)+plain.Train.SeqLen(next) <= maxLen {
				t.Fatalf("sequence %d (%d tokens) had room for row %d (%d tokens)", i, len(ids), next, plain.Train.SeqLen(next))
			}
		}
	}
	if len(seen) != 60 {
		t.Fatalf("%d rows packed, want 60", len(seen))
	}
	all := make([]int, s.Len())
	for i := range all {
		all[i] = i
	}
	plainAll := make([]int, 60)
	for i := range plainAll {
		plainAll[i] = i
	}
	if s.TargetTokens(all) != plain.Train.TargetTokens(plainAll) {
		t.Errorf("packing changed the target tokens: %d vs %d", s.TargetTokens(all), plain.Train.TargetTokens(plainAll))
	}
	if eff := s.PackingEfficiency(); eff != float64(tokens)/float64(s.Len()*maxLen) || eff < 0.7 {
		t.Errorf("efficiency %v", eff)
	}
	// The packing order is seeded: the same seed packs the same way.
	d.Packing = true
	again := env.mustLoad(t, d, false, 5)
	other := env.mustLoad(t, d, false, 6)
	if fmt.Sprint(allSequences(again.Train)) != fmt.Sprint(allSequences(s)) {
		t.Error("same seed, different packing")
	}
	if fmt.Sprint(allSequences(other.Train)) == fmt.Sprint(allSequences(s)) {
		t.Error("seeds 5 and 6 pack the same way")
	}
}

// An example longer than half max_seq_len still packs alone, and one exactly
// max_seq_len long fills a sequence.
func TestPackingEdges(t *testing.T) {
	env := newLoadEnv(t, tokOpts{})
	path := writeJSONL(t, env.dir, "train.jsonl", textRows(5, func(i int) int { return 40 }))
	d := testDataset(func(d *configs.Dataset) { d.Train, d.Packing, d.MaxSeqLen = path, true, 30 })
	data := env.mustLoad(t, d, false, 1)
	if data.Train.Len() != 5 || data.Files[0].Truncated != 5 {
		t.Fatalf("%d sequences, stats %+v", data.Train.Len(), data.Files[0])
	}
	for i := 0; i < 5; i++ {
		if data.Train.SeqLen(i) != 30 {
			t.Errorf("sequence %d: %d tokens", i, data.Train.SeqLen(i))
		}
	}
}

func TestEvalSplit(t *testing.T) {
	env := newLoadEnv(t, tokOpts{})
	path := writeJSONL(t, env.dir, "train.jsonl", textRows(20, func(i int) int { return 3 }))
	d := testDataset(func(d *configs.Dataset) { d.Train, d.EvalSplit = path, 0.22 })
	rowsOf := func(s *Set) []int {
		var rows []int
		for i := 0; i < s.Len(); i++ {
			rows = append(rows, s.Rows(i)...)
		}
		return rows
	}
	a := env.mustLoad(t, d, false, 42)
	if a.Eval == nil || a.Eval.Len() != 5 || a.Train.Len() != 15 || a.Eval.Packed() {
		t.Fatalf("split %d/%d", a.Train.Len(), a.Eval.Len())
	}
	train, eval := rowsOf(a.Train), rowsOf(a.Eval)
	all := append(slices.Clone(train), eval...)
	slices.Sort(all)
	for i, r := range all {
		if r != i {
			t.Fatalf("train %v and eval %v do not partition the rows", train, eval)
		}
	}
	if !slices.IsSorted(eval) || !slices.IsSorted(train) {
		t.Errorf("sets not in file order: %v %v", train, eval)
	}
	if b := env.mustLoad(t, d, false, 42); !slices.Equal(rowsOf(b.Eval), eval) {
		t.Error("same seed, different split")
	}
	if c := env.mustLoad(t, d, false, 43); slices.Equal(rowsOf(c.Eval), eval) {
		t.Error("seeds 42 and 43 split the same way")
	}
	// With packing, the eval rows are the same and stay unpacked.
	d.Packing = true
	if p := env.mustLoad(t, d, false, 42); !slices.Equal(rowsOf(p.Eval), eval) || p.Eval.Packed() {
		t.Error("packing changed the eval split")
	}
	// A separate eval file.
	evalPath := writeJSONL(t, env.dir, "eval.jsonl", textRows(3, func(i int) int { return 2 }))
	d = testDataset(func(d *configs.Dataset) { d.Train, d.Eval = path, evalPath })
	e := env.mustLoad(t, d, true, 42)
	if e.Train.Len() != 20 || e.Eval.Len() != 3 || len(e.Files) != 2 || e.Files[1].File != evalPath {
		t.Fatalf("eval file: %d/%d, %+v", e.Train.Len(), e.Eval.Len(), e.Files)
	}
	// Too small to split.
	one := writeJSONL(t, env.dir, "one.jsonl", textRows(1, func(i int) int { return 2 }))
	if _, err := env.load(t, testDataset(func(d *configs.Dataset) { d.Train, d.EvalSplit = one, 0.5 }), false, 1); !errors.Is(err, ErrEmpty) {
		t.Errorf("split of one example: %v", err)
	}
}

func TestOnError(t *testing.T) {
	env := newLoadEnv(t, tokOpts{})
	rows := textRows(300, func(i int) int { return 3 })
	rows[1] = map[string]any{"txt": "x"}
	rows[250] = map[string]any{"text": 5}
	path := writeJSONL(t, env.dir, "train.jsonl", rows)
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("{not json\n")
	f.Close()
	d := testDataset(func(d *configs.Dataset) { d.Train = path })
	_, err := env.load(t, d, false, 1)
	var re *RowError
	if !errors.As(err, &re) || err.Error() != path+`:2: field "text" missing` {
		t.Fatalf("on_error fail: %v", err)
	}
	d.OnError = "skip"
	data := env.mustLoad(t, d, false, 1)
	st := data.Files[0]
	if st.Rows != 301 || st.Examples != 298 || st.Skipped != 3 || len(st.Errors) != 3 || data.Train.Len() != 298 {
		t.Fatalf("stats %+v", st)
	}
	if st.Errors[1] != path+`:251: field "text" is a number, want a string` || !strings.HasPrefix(st.Errors[2], path+":301: not a JSON object") {
		t.Errorf("errors %q", st.Errors)
	}
	// Nothing left.
	bad := writeJSONL(t, env.dir, "bad.jsonl", []map[string]any{{"a": 1}, {"b": 2}})
	d.Train = bad
	if _, err := env.load(t, d, false, 1); !errors.Is(err, ErrEmpty) || !strings.Contains(err.Error(), "2 skipped as malformed") {
		t.Errorf("all rows bad: %v", err)
	}
}

func TestLengthStats(t *testing.T) {
	env := newLoadEnv(t, tokOpts{})
	rows := []map[string]any{
		{"instruction": "Say yes.", "output": "yes"},
		{"instruction": sentence(1, 150), "output": "yes"},        // prompt alone longer than max: nothing left to train
		{"instruction": "Say a lot.", "output": sentence(2, 150)}, // response truncated
	}
	path := writeJSONL(t, env.dir, "train.jsonl", rows)
	d := testDataset(func(d *configs.Dataset) { d.Train, d.Format, d.MaxSeqLen = path, "instruction", 120 })
	st := env.mustLoad(t, d, false, 1).Files[0]
	if st.Examples != 2 || st.Truncated != 1 || st.Untrainable != 1 || st.TooLong != 0 {
		t.Errorf("right: %+v", st)
	}
	d.Truncation = TruncateDrop
	st = env.mustLoad(t, d, false, 1).Files[0]
	if st.Examples != 1 || st.Truncated != 0 || st.TooLong != 2 {
		t.Errorf("drop: %+v", st)
	}
}

func cacheEntries(t *testing.T, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(root)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestCache(t *testing.T) {
	env := newLoadEnv(t, tokOpts{})
	path := writeJSONL(t, env.dir, "train.jsonl", textRows(50, func(i int) int { return 1 + i%9 }))
	root := filepath.Join(env.dir, "processed")
	d := testDataset(func(d *configs.Dataset) { d.Train, d.MaxSeqLen = path, 8 })
	mem := env.mustLoad(t, d, false, 1)
	first := env.mustLoad(t, d, true, 1)
	if first.Files[0].Cached {
		t.Fatal("first load came from the cache")
	}
	second := env.mustLoad(t, d, true, 1)
	if !second.Files[0].Cached || second.Files[0].Truncated != first.Files[0].Truncated || second.Files[0].File != path {
		t.Fatalf("second load: %+v", second.Files[0])
	}
	want := fmt.Sprint(allSequences(mem.Train))
	if fmt.Sprint(allSequences(first.Train)) != want || fmt.Sprint(allSequences(second.Train)) != want {
		t.Fatal("cached sequences differ from the in-memory ones")
	}
	if names := cacheEntries(t, root); len(names) != 1 || !strings.HasPrefix(names[0], "train.jsonl-") {
		t.Fatalf("cache entries %v", names)
	}
	files := cacheEntries(t, filepath.Join(root, cacheEntries(t, root)[0]))
	if strings.Join(files, " ") != "meta.json offsets.bin rows.bin tokens.bin" {
		t.Errorf("cache files %v", files)
	}

	// Settings that do not change tokens reuse the cache.
	for name, mod := range map[string]func(*configs.Dataset){
		"packing":         func(d *configs.Dataset) { d.Packing = true },
		"eval_split":      func(d *configs.Dataset) { d.EvalSplit = 0.1 },
		"on_error":        func(d *configs.Dataset) { d.OnError = "skip" },
		"unused field":    func(d *configs.Dataset) { d.Fields.Output = "answer" },
		"train_on_prompt": func(d *configs.Dataset) { d.TrainOnPrompt = true }, // completion trains on everything anyway
	} {
		d2 := d
		mod(&d2)
		if data := env.mustLoad(t, d2, true, 9); !data.Files[0].Cached {
			t.Errorf("%s: rebuilt the cache", name)
		}
	}
	if n := len(cacheEntries(t, root)); n != 1 {
		t.Fatalf("%d cache entries after reuse", n)
	}

	// Every setting that changes tokens makes a new cache.
	n := 1
	rebuilt := func(name string, data *Data) {
		t.Helper()
		n++
		if data.Files[0].Cached {
			t.Errorf("%s: cache reused", name)
		}
		if got := len(cacheEntries(t, root)); got != n {
			t.Errorf("%s: %d cache entries, want %d", name, got, n)
		}
	}
	for name, mod := range map[string]func(*configs.Dataset){
		"max_seq_len": func(d *configs.Dataset) { d.MaxSeqLen = 9 },
		"truncation":  func(d *configs.Dataset) { d.Truncation = TruncateLeft },
		"field":       func(d *configs.Dataset) { d.Fields.Text = "body" },
	} {
		d2 := d
		mod(&d2)
		data, _ := env.load(t, d2, true, 1)
		if name == "field" {
			d2.OnError = "skip"
			// Every row lacks "body": on_error fail stops the build and
			// leaves nothing; skip caches a file without examples.
			if data != nil || len(cacheEntries(t, root)) != n {
				t.Fatal("field: a failed build left a cache")
			}
			if _, err := env.load(t, d2, true, 1); !errors.Is(err, ErrEmpty) {
				t.Fatalf("field: %v", err)
			}
			n++
			continue
		}
		rebuilt(name, data)
	}
	old := env.tokFP
	env.tokFP = "another tokenizer"
	rebuilt("tokenizer", env.mustLoad(t, d, true, 1))
	env.tokFP = old
	// The data file changed (same size, new contents and time).
	data, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(data), "the", "THE", 1)), 0o644)
	rebuilt("data file", env.mustLoad(t, d, true, 1))
	for _, name := range cacheEntries(t, root) {
		if strings.HasPrefix(name, ".") {
			t.Errorf("left behind: %s", name)
		}
	}
}

// A build that fails midway leaves nothing in the cache directory.
func TestCacheBuildFailureLeavesNothing(t *testing.T) {
	env := newLoadEnv(t, tokOpts{})
	rows := textRows(2000, func(i int) int { return 4 })
	rows[1500] = map[string]any{"text": false}
	path := writeJSONL(t, env.dir, "train.jsonl", rows)
	root := filepath.Join(env.dir, "processed")
	d := testDataset(func(d *configs.Dataset) { d.Train = path })

	var sawTemp bool
	testHookBeforeRename = func(tmp string) error {
		sawTemp = len(cacheEntries(t, root)) == 1 && strings.HasPrefix(cacheEntries(t, root)[0], ".tmp-")
		return errors.New("injected failure")
	}
	defer func() { testHookBeforeRename = nil }()
	d.OnError = "skip"
	if _, err := env.load(t, d, true, 1); err == nil || err.Error() != "injected failure" {
		t.Fatalf("load with failing rename: %v", err)
	}
	if !sawTemp {
		t.Error("the build did not write into a temporary directory")
	}
	if names := cacheEntries(t, root); len(names) != 0 {
		t.Fatalf("left behind after a failure before the rename: %v", names)
	}
	testHookBeforeRename = nil

	d.OnError = "fail"
	_, err := env.load(t, d, true, 1)
	if !errors.Is(err, ErrBadRow) || !strings.Contains(err.Error(), ":1501:") {
		t.Fatalf("load: %v", err)
	}
	if names := cacheEntries(t, root); len(names) != 0 {
		t.Fatalf("left behind after a bad row: %v", names)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d.OnError = "skip"
	_, err = Load(ctx, d, env.tok, Options{CacheDir: root, TokenizerFingerprint: env.tokFP})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled load: %v", err)
	}
	if names := cacheEntries(t, root); len(names) != 0 {
		t.Fatalf("left behind after cancelling: %v", names)
	}
	// A cache built with on_error skip remembers its bad rows: a later load
	// with on_error fail reports them instead of silently using it.
	env.mustLoad(t, d, true, 1)
	d.OnError = "fail"
	_, err = env.load(t, d, true, 1)
	if !errors.Is(err, ErrBadRow) || !strings.Contains(err.Error(), path+`:1501: field "text" is a boolean`) {
		t.Fatalf("fail after a skip build: %v", err)
	}
}

func TestCacheDamaged(t *testing.T) {
	env := newLoadEnv(t, tokOpts{})
	path := writeJSONL(t, env.dir, "train.jsonl", textRows(30, func(i int) int { return 2 + i%5 }))
	root := filepath.Join(env.dir, "processed")
	d := testDataset(func(d *configs.Dataset) { d.Train = path })
	want := fmt.Sprint(allSequences(env.mustLoad(t, d, true, 1).Train))
	dir := filepath.Join(root, cacheEntries(t, root)[0])
	for _, damage := range []func(){
		func() { os.Truncate(filepath.Join(dir, cacheTokensFile), 10) },
		func() { os.WriteFile(filepath.Join(dir, cacheMetaFile), []byte("{"), 0o644) },
		func() { os.Remove(filepath.Join(dir, cacheRowsFile)) },
		func() {
			off := filepath.Join(dir, cacheOffsetsFile)
			data, _ := os.ReadFile(off)
			data[8] = 0xff // an offset beyond the tokens
			os.WriteFile(off, data, 0o644)
		},
	} {
		damage()
		data := env.mustLoad(t, d, true, 1)
		if data.Files[0].Cached || fmt.Sprint(allSequences(data.Train)) != want {
			t.Fatalf("damaged cache not rebuilt (cached %v)", data.Files[0].Cached)
		}
	}
}

func TestCacheConcurrentBuilds(t *testing.T) {
	env := newLoadEnv(t, tokOpts{})
	path := writeJSONL(t, env.dir, "train.jsonl", textRows(500, func(i int) int { return 2 + i%7 }))
	d := testDataset(func(d *configs.Dataset) { d.Train = path })
	want := fmt.Sprint(allSequences(env.mustLoad(t, d, false, 1).Train))
	var wg sync.WaitGroup
	got := make([]string, 4)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data, err := env.load(t, d, true, 1)
			if err != nil {
				t.Error(err)
				return
			}
			got[i] = fmt.Sprint(allSequences(data.Train))
		}()
	}
	wg.Wait()
	for i, g := range got {
		if g != want {
			t.Errorf("load %d differs", i)
		}
	}
	if names := cacheEntries(t, filepath.Join(env.dir, "processed")); len(names) != 1 {
		t.Errorf("cache entries %v", names)
	}
}

func TestLoadFormatsFromEveryReader(t *testing.T) {
	env := newLoadEnv(t, tokOpts{})
	d := testDataset(func(d *configs.Dataset) { d.Format = "chat" })
	msgs := `[{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}]`
	paths := []string{
		writeFile(t, env.dir, "a.jsonl", `{"messages": `+msgs+"}\n"),
		writeFile(t, env.dir, "a.json.gz", `[{"messages": `+msgs+"}]"),
		writeFile(t, env.dir, "a.csv", "id,messages\n1,\""+strings.ReplaceAll(msgs, `"`, `""`)+"\"\n"),
	}
	pq := filepath.Join(env.dir, "a.parquet")
	writeParquet(t, pq, []pqRow{{Messages: []pqMessage{{"user", "Capital of France?"}, {"assistant", "Paris."}}}}, 10)
	paths = append(paths, pq)
	var want string
	for _, p := range paths {
		d.Train = p
		data := env.mustLoad(t, d, true, 1)
		got := fmt.Sprint(allSequences(data.Train))
		if want == "" {
			want = got
		} else if got != want {
			t.Errorf("%s: %s, want %s", p, got, want)
		}
	}
}

// A build removes the temporary directories that crashed builds of the same
// cache left more than an hour ago, and leaves recent ones (a build under way).
func TestCacheRemovesStaleTemps(t *testing.T) {
	env := newLoadEnv(t, tokOpts{})
	path := writeJSONL(t, env.dir, "train.jsonl", textRows(5, func(i int) int { return 3 }))
	root := filepath.Join(env.dir, "processed")
	d := testDataset(func(d *configs.Dataset) { d.Train = path })
	env.mustLoad(t, d, true, 1)
	name := cacheEntries(t, root)[0]
	old, fresh := filepath.Join(root, ".tmp-"+name+"-1"), filepath.Join(root, ".tmp-"+name+"-2")
	for _, dir := range []string{old, fresh} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, cacheTokensFile), []byte("x"), 0o644)
	}
	then := time.Now().Add(-2 * time.Hour)
	os.Chtimes(filepath.Join(old, cacheTokensFile), then, then)
	os.Chtimes(old, then, then)
	os.RemoveAll(filepath.Join(root, name))
	if data := env.mustLoad(t, d, true, 1); data.Files[0].Cached {
		t.Fatal("not rebuilt")
	}
	if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temporary directory kept: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("recent temporary directory removed: %v", err)
	}
}
