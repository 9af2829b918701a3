package dataset

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/herdml/herd/configs"
	"github.com/herdml/herd/internal/fsutil"
)

// cacheVersion changes whenever the cache layout or the tokens herd would
// produce for the same inputs change (the encoder, the formats, the Alpaca
// template): old caches are then rebuilt rather than misread.
const cacheVersion = 1

// Cache file names inside one cache directory.
const (
	cacheMetaFile    = "meta.json"
	cacheTokensFile  = "tokens.bin"
	cacheOffsetsFile = "offsets.bin"
	cacheRowsFile    = "rows.bin"
)

// fingerprintChunk is how much of each end of a data file is hashed.
const fingerprintChunk = 1 << 20

// fileFingerprint identifies a data file's contents cheaply: its size, its
// modification time and the SHA-256 of its first and last MiB. A file edited
// in place keeps its cache only if its size, time and both ends are unchanged.
type fileFingerprint struct {
	Size    int64  `json:"size"`
	ModTime int64  `json:"mtime_ns"`
	Head    string `json:"head_sha256"`
	Tail    string `json:"tail_sha256"`
}

// fingerprintFile computes the fileFingerprint of path.
func fingerprintFile(path string) (fileFingerprint, error) {
	f, err := os.Open(path)
	if err != nil {
		return fileFingerprint{}, fmt.Errorf("dataset: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fileFingerprint{}, fmt.Errorf("dataset: %w", err)
	}
	fp := fileFingerprint{Size: fi.Size(), ModTime: fi.ModTime().UnixNano()}
	hash := func(off int64) (string, error) {
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(f, off, fingerprintChunk)); err != nil {
			return "", fmt.Errorf("dataset: %s: %w", path, err)
		}
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	if fp.Head, err = hash(0); err != nil {
		return fp, err
	}
	if fp.Tail, err = hash(max(0, fp.Size-fingerprintChunk)); err != nil {
		return fp, err
	}
	return fp, nil
}

// TokenizerFingerprint hashes the files a tokenizer directory (or a
// tokenizer.json path) is loaded from: tokenizer.json, tokenizer_config.json
// (special tokens, chat template) and chat_template.jinja, those present.
// Options.TokenizerFingerprint takes it so that a changed tokenizer rebuilds
// the cache.
func TokenizerFingerprint(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("dataset: tokenizer: %w", err)
	}
	file, dir := path, filepath.Dir(path)
	if fi.IsDir() {
		file, dir = filepath.Join(path, "tokenizer.json"), path
	}
	h := sha256.New()
	for i, p := range []string{file, filepath.Join(dir, "tokenizer_config.json"), filepath.Join(dir, "chat_template.jinja")} {
		data, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) && i > 0 {
			data = nil
		} else if err != nil {
			return "", fmt.Errorf("dataset: tokenizer: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(p), len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// cacheInputs is everything that changes the tokens of a data file. Its
// SHA-256 (of the JSON form) is the cache key.
type cacheInputs struct {
	Version       int             `json:"version"`
	File          fileFingerprint `json:"file"`
	Tokenizer     string          `json:"tokenizer_sha256"`
	Format        string          `json:"format"`
	Fields        []string        `json:"fields"`
	TrainOnPrompt bool            `json:"train_on_prompt"`
	MaxSeqLen     int             `json:"max_seq_len"`
	Truncation    string          `json:"truncation"`
}

func newCacheInputs(fp fileFingerprint, tokFP string, d configs.Dataset) cacheInputs {
	in := cacheInputs{Version: cacheVersion, File: fp, Tokenizer: tokFP, Format: d.Format,
		TrainOnPrompt: d.TrainOnPrompt, MaxSeqLen: d.MaxSeqLen, Truncation: d.Truncation}
	switch d.Format {
	case "completion":
		in.Fields = []string{d.Fields.Text}
		in.TrainOnPrompt = false // every token is trained either way
	case "instruction":
		in.Fields = []string{d.Fields.Instruction, d.Fields.Input, d.Fields.Output}
	case "chat":
		in.Fields = []string{d.Fields.Messages}
	}
	return in
}

func (in cacheInputs) key() string {
	data, _ := json.Marshal(in)
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// cacheMeta is meta.json, written last: a cache directory without it is
// not a cache.
type cacheMeta struct {
	Key      string      `json:"key"`
	Inputs   cacheInputs `json:"inputs"`
	Examples int         `json:"examples"`
	Tokens   int64       `json:"tokens"`
	Stats    Stats       `json:"stats"`
}

// cacheDirName is "<data file name>-<first 16 hex digits of the key>".
func cacheDirName(dataPath, key string) string {
	base := filepath.Base(dataPath)
	var b strings.Builder
	for _, r := range base {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return strings.TrimLeft(b.String(), ".") + "-" + key[:16]
}

// errCacheInvalid says a cache directory exists but cannot be used.
var errCacheInvalid = errors.New("invalid cache")

// openCache maps the cache in dir. It returns os.ErrNotExist when there is
// none and errCacheInvalid when it is damaged or belongs to another key.
func openCache(dir, key string) (*store, error) {
	data, err := os.ReadFile(filepath.Join(dir, cacheMetaFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, os.ErrNotExist
		}
		return nil, err
	}
	var m cacheMeta
	if err := json.Unmarshal(data, &m); err != nil || m.Key != key || m.Examples < 0 || m.Tokens < 0 {
		return nil, errCacheInvalid
	}
	s := &store{stats: m.Stats, dir: dir}
	var unmaps []func() error
	s.unmap = func() error {
		var errs []error
		for _, u := range unmaps {
			errs = append(errs, u())
		}
		return errors.Join(errs...)
	}
	for _, f := range []struct {
		name string
		size int64
		dst  *[]byte
	}{
		{cacheTokensFile, 4 * m.Tokens, &s.tokens},
		{cacheOffsetsFile, 8 * int64(m.Examples+1), &s.offsets},
		{cacheRowsFile, 8 * int64(m.Examples), &s.rows},
	} {
		buf, unmap, err := mapCacheFile(filepath.Join(dir, f.name), f.size)
		if err != nil {
			s.unmap()
			return nil, err
		}
		*f.dst = buf
		if unmap != nil {
			unmaps = append(unmaps, func() error { return unmap(buf) })
		}
	}
	// The offsets must rise from 0 to the token count: a cheap check that
	// also guards every later slice expression.
	prev := uint64(0)
	for i := 0; i <= m.Examples; i++ {
		o := binary.LittleEndian.Uint64(s.offsets[8*i:])
		if o < prev || (i == 0 && o != 0) || o > uint64(m.Tokens) || (i == m.Examples && o != uint64(m.Tokens)) {
			s.unmap()
			return nil, errCacheInvalid
		}
		prev = o
	}
	s.stats.Cached = true
	s.cleanup = runtime.AddCleanup(s, func(u func() error) { u() }, s.unmap)
	return s, nil
}

func mapCacheFile(path string, size int64) ([]byte, func([]byte) error, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, errCacheInvalid
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() != size {
		return nil, nil, errCacheInvalid
	}
	return mapFile(f, size)
}

// staleTempAge is how old an abandoned build's temporary directory (a crashed
// process) must be before another build removes it.
const staleTempAge = time.Hour

// testHookBeforeRename, when set, runs after a cache is fully written and
// before it is renamed into place; an error fails the build there.
var testHookBeforeRename func(tmp string) error

// buildCache writes the cache of one data file into root/name atomically:
// everything goes to a temporary directory beside it, is synced, then the
// directory is renamed into place. fill streams the examples to add; when it
// fails, the temporary directory is removed and nothing is left behind. When
// another process renamed the same cache into place first, its copy is used.
func buildCache(root, name string, in cacheInputs, fill func(add func(built) error) (Stats, error)) (*store, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("dataset: cache: %w", err)
	}
	removeStaleTemps(root, name)
	tmp, err := os.MkdirTemp(root, ".tmp-"+name+"-")
	if err != nil {
		return nil, fmt.Errorf("dataset: cache: %w", err)
	}
	defer os.RemoveAll(tmp) // a no-op after the rename
	tf, err := os.Create(filepath.Join(tmp, cacheTokensFile))
	if err != nil {
		return nil, fmt.Errorf("dataset: cache: %w", err)
	}
	defer tf.Close()
	w := bufio.NewWriterSize(tf, 1<<20)
	offsets := binary.LittleEndian.AppendUint64(nil, 0)
	var rows []byte
	var tokens uint64
	var scratch []byte
	st, err := fill(func(ex built) error {
		scratch = scratch[:0]
		for _, t := range ex.toks {
			scratch = binary.LittleEndian.AppendUint32(scratch, t)
		}
		if _, err := w.Write(scratch); err != nil {
			return fmt.Errorf("dataset: cache: %w", err)
		}
		tokens += uint64(len(ex.toks))
		offsets = binary.LittleEndian.AppendUint64(offsets, tokens)
		rows = binary.LittleEndian.AppendUint64(rows, uint64(ex.src.Index))
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := w.Flush(); err != nil {
		return nil, fmt.Errorf("dataset: cache: %w", err)
	}
	if err := tf.Sync(); err != nil {
		return nil, fmt.Errorf("dataset: cache: %w", err)
	}
	if err := tf.Close(); err != nil {
		return nil, fmt.Errorf("dataset: cache: %w", err)
	}
	meta, err := json.MarshalIndent(cacheMeta{Key: in.key(), Inputs: in, Examples: st.Examples, Tokens: int64(tokens), Stats: st}, "", "  ")
	if err != nil {
		return nil, err
	}
	// meta.json last: its presence says the other files are complete.
	for _, f := range []struct {
		name string
		data []byte
	}{{cacheOffsetsFile, offsets}, {cacheRowsFile, rows}, {cacheMetaFile, append(meta, '\n')}} {
		if err := fsutil.WriteFile(filepath.Join(tmp, f.name), f.data); err != nil {
			return nil, fmt.Errorf("dataset: cache: %w", err)
		}
	}
	if testHookBeforeRename != nil {
		if err := testHookBeforeRename(tmp); err != nil {
			return nil, err
		}
	}
	final := filepath.Join(root, name)
	if err := os.Rename(tmp, final); err != nil {
		// Another process may have finished the same cache first.
		if s, err2 := openCache(final, in.key()); err2 == nil {
			return s, nil
		}
		return nil, fmt.Errorf("dataset: cache: %w", err)
	}
	if err := fsutil.SyncDir(root); err != nil {
		return nil, fmt.Errorf("dataset: cache: %w", err)
	}
	s, err := openCache(final, in.key())
	if err != nil {
		return nil, fmt.Errorf("dataset: cache: %s: reopen: %w", final, err)
	}
	s.stats.Cached = false
	return s, nil
}

// removeStaleTemps removes temporary build directories of name that no
// process has written to for staleTempAge (a build that crashed).
func removeStaleTemps(root, name string) {
	matches, _ := filepath.Glob(filepath.Join(root, ".tmp-"+name+"-*"))
	for _, dir := range matches {
		newest := time.Time{}
		if fi, err := os.Stat(dir); err == nil {
			newest = fi.ModTime()
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if fi, err := e.Info(); err == nil && fi.ModTime().After(newest) {
				newest = fi.ModTime()
			}
		}
		if time.Since(newest) > staleTempAge {
			os.RemoveAll(dir)
		}
	}
}
