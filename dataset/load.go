package dataset

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/herdml/herd/configs"
	"github.com/herdml/herd/dataset/tokenizer"
)

// Options are the settings of Load that are not in the dataset section.
type Options struct {
	// CacheDir is where tokenized files are cached (data/processed); "" keeps
	// tokens in memory only.
	CacheDir string
	// TokenizerFingerprint identifies the tokenizer's files in the cache key
	// (see TokenizerFingerprint and LoadTokenizer). Required with CacheDir.
	TokenizerFingerprint string
	// Seed is training.seed: it picks the eval_split rows and the packing
	// order.
	Seed uint64
	// Workers is the number of tokenizing goroutines; 0 means GOMAXPROCS.
	Workers int
}

// Data is the loaded training data.
type Data struct {
	// Train is the training set, packed when dataset.packing is set.
	Train *Set
	// Eval is the evaluation set (dataset.eval, or the eval_split share of the
	// training rows), never packed; nil without evaluation data.
	Eval *Set
	// Files has the Stats of each data file read: dataset.train, then
	// dataset.eval when set.
	Files []Stats

	stores []*store
}

// Close releases the cache mappings; the sets must not be used afterwards.
func (d *Data) Close() error {
	var errs []error
	for _, s := range d.stores {
		errs = append(errs, s.close())
	}
	return errors.Join(errs...)
}

// LoadTokenizer loads a tokenizer (a tokenizer.json or a directory holding
// one) and returns it with its TokenizerFingerprint.
func LoadTokenizer(path string) (*tokenizer.Tokenizer, string, error) {
	fp, err := TokenizerFingerprint(path)
	if err != nil {
		return nil, "", err
	}
	tok, err := tokenizer.Load(path)
	if err != nil {
		return nil, "", err
	}
	return tok, fp, nil
}

// Load reads, tokenizes (or finds in the cache) and arranges the data of a
// dataset section: the training file, the evaluation file or eval_split
// share, truncation, packing. A malformed row fails the load with a
// *RowError naming file, line and reason unless d.OnError is skip; the
// skipped rows are counted in Files.
func Load(ctx context.Context, d configs.Dataset, tok Tokenizer, o Options) (*Data, error) {
	if d.Train == "" {
		return nil, errors.New("dataset: no training file (dataset.train)")
	}
	if o.CacheDir != "" && o.TokenizerFingerprint == "" {
		return nil, errors.New("dataset: a cache needs the tokenizer's fingerprint (Options.TokenizerFingerprint)")
	}
	if !(d.EvalSplit >= 0 && d.EvalSplit < 1) {
		return nil, fmt.Errorf("dataset: eval_split must be in [0, 1), got %v", d.EvalSplit)
	}
	p, err := newPipeline(d, tok, o)
	if err != nil {
		return nil, err
	}
	data := &Data{}
	fail := func(err error) (*Data, error) {
		data.Close()
		return nil, err
	}
	train, err := p.file(ctx, d.Train)
	if err != nil {
		return fail(err)
	}
	data.stores = append(data.stores, train)
	data.Files = append(data.Files, train.stats)
	n := train.examples()
	if n == 0 {
		return fail(emptyErr(train.stats))
	}
	trainIdx := make([]int32, n)
	for i := range trainIdx {
		trainIdx[i] = int32(i)
	}
	var evalIdx []int32
	evalStore := train
	switch {
	case d.Eval != "":
		ev, err := p.file(ctx, d.Eval)
		if err != nil {
			return fail(err)
		}
		data.stores = append(data.stores, ev)
		data.Files = append(data.Files, ev.stats)
		if ev.examples() == 0 {
			return fail(emptyErr(ev.stats))
		}
		evalStore = ev
		for i := range ev.examples() {
			evalIdx = append(evalIdx, int32(i))
		}
	case d.EvalSplit > 0:
		if n < 2 {
			return fail(fmt.Errorf("%w: %s: eval_split %v of %d example leaves nothing to train on", ErrEmpty, d.Train, d.EvalSplit, n))
		}
		nEval := min(max(int(math.Ceil(d.EvalSplit*float64(n))), 1), n-1)
		perm := shuffled(n, o.Seed, streamSplit)
		evalIdx = slices.Clone(perm[:nEval])
		trainIdx = slices.Clone(perm[nEval:])
		slices.Sort(evalIdx)
		slices.Sort(trainIdx)
	}
	pad := padID(tok.Special())
	if d.Packing {
		// Packed in a seeded shuffled order, so that a sequence does not hold
		// neighbours of a sorted file; the Plan then shuffles sequences anew
		// every epoch.
		order := shuffled(len(trainIdx), o.Seed, streamPack)
		packed := make([]int32, len(trainIdx))
		for i, j := range order {
			packed[i] = trainIdx[j]
		}
		trainIdx = packed
	}
	data.Train = newSet(train, trainIdx, d.Packing, d.MaxSeqLen, pad)
	if evalIdx != nil {
		data.Eval = newSet(evalStore, evalIdx, false, d.MaxSeqLen, pad)
	}
	return data, nil
}

// Random streams of the seed, one per use.
const (
	streamSplit = 0x73706c6974 // "split"
	streamPack  = 0x7061636b   // "pack"
)

func padID(sp tokenizer.SpecialTokens) int64 {
	switch {
	case sp.PAD >= 0:
		return int64(sp.PAD)
	case sp.EOS >= 0:
		return int64(sp.EOS)
	}
	return 0
}

func emptyErr(st Stats) error {
	return fmt.Errorf("%w: %s: %d rows: %d skipped as malformed, %d longer than max_seq_len dropped, %d with nothing left to train on after truncation",
		ErrEmpty, st.File, st.Rows, st.Skipped, st.TooLong, st.Untrainable)
}

// pipeline turns data files into stores.
type pipeline struct {
	d    configs.Dataset
	o    Options
	f    *formatter
	e    *encoder
	skip bool
}

func newPipeline(d configs.Dataset, tok Tokenizer, o Options) (*pipeline, error) {
	f, err := newFormatter(d, tok)
	if err != nil {
		return nil, err
	}
	e, err := newEncoder(tok, d.MaxSeqLen, d.Truncation)
	if err != nil {
		return nil, err
	}
	switch d.OnError {
	case "", "fail", "skip":
	default:
		return nil, fmt.Errorf("dataset: on_error must be fail or skip, got %q", d.OnError)
	}
	if d.Format == "chat" {
		if _, err := tok.ApplyChatTemplate([]tokenizer.Message{{Role: "user", Content: "hi"}}, false); errors.Is(err, tokenizer.ErrNoChatTemplate) {
			return nil, fmt.Errorf("dataset: format chat needs the tokenizer's chat template: %w", err)
		}
	}
	return &pipeline{d: d, o: o, f: f, e: e, skip: d.OnError == "skip"}, nil
}

// file returns the store of one data file: from the cache when it holds it,
// else tokenized now (and cached when there is a cache).
func (p *pipeline) file(ctx context.Context, path string) (*store, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("%w: %s is a directory", ErrFormat, path)
	}
	if _, _, err := fileKind(path); err != nil {
		return nil, err
	}
	fill := func(add func(built) error) (Stats, error) {
		st, err := tokenizeFile(ctx, path, p.f, p.e, p.skip, p.o.Workers, add)
		st.File, st.Bytes = path, fi.Size()
		return st, err
	}
	if p.o.CacheDir == "" {
		b := newMemBuilder(fi.Size())
		st, err := fill(b.add)
		if err != nil {
			return nil, err
		}
		return b.store(st), nil
	}
	fp, err := fingerprintFile(path)
	if err != nil {
		return nil, err
	}
	in := newCacheInputs(fp, p.o.TokenizerFingerprint, p.d)
	key := in.key()
	dir := filepath.Join(p.o.CacheDir, cacheDirName(path, key))
	s, err := openCache(dir, key)
	switch {
	case err == nil:
		s.stats.File = path
		if !p.skip && s.stats.Skipped > 0 {
			msg := "malformed rows"
			if len(s.stats.Errors) > 0 {
				msg = s.stats.Errors[0]
			}
			s.close()
			return nil, fmt.Errorf("%w: %s (%d malformed rows, found by an earlier build with on_error skip; fix them or set dataset.on_error: skip)",
				ErrBadRow, msg, s.stats.Skipped)
		}
		return s, nil
	case errors.Is(err, os.ErrNotExist):
	default:
		// A damaged cache (a disk error, a manual edit): rebuild it.
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("dataset: cache: %w", err)
		}
	}
	return buildCache(p.o.CacheDir, filepath.Base(dir), in, fill)
}
