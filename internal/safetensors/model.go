package safetensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Model is the weights of a Hugging Face model directory: one
// model.safetensors, or the shards named by model.safetensors.index.json,
// looked up by tensor name as if they were one file. Like File, its methods
// may be called concurrently except Close.
type Model struct {
	dir      string
	files    []*File          // in file-name order
	byName   map[string]*File // tensor → the file holding it
	names    []string
	metadata map[string]string
}

// OpenModel opens the weights in dir. As transformers does, model.safetensors
// is used when present, otherwise model.safetensors.index.json and its
// shards. For a sharded model every tensor the index names must be in the
// shard it names, and every tensor in a shard must be named by the index for
// that shard (so none is in two shards).
func OpenModel(dir string) (*Model, error) {
	single := filepath.Join(dir, SingleFileName)
	if _, err := os.Stat(single); err == nil {
		f, err := Open(single)
		if err != nil {
			return nil, err
		}
		return &Model{
			dir:      dir,
			files:    []*File{f},
			byName:   fileMap(f),
			names:    f.Names(),
			metadata: f.Metadata(),
		}, nil
	}
	indexPath := filepath.Join(dir, IndexFileName)
	raw, err := os.ReadFile(indexPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("safetensors: %s holds neither %s nor %s: not a Hugging Face model directory (for a hub model, run `herd model pull ORG/NAME` and use the directory it prints)",
			dir, SingleFileName, IndexFileName)
	}
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	weightMap, meta, err := parseIndex(indexPath, raw)
	if err != nil {
		return nil, err
	}
	m := &Model{dir: dir, byName: map[string]*File{}, metadata: meta}
	ok := false
	defer func() {
		if !ok {
			m.Close()
		}
	}()
	shards := map[string]*File{}
	for _, shard := range slices.Sorted(maps.Values(weightMap)) {
		if shards[shard] != nil {
			continue
		}
		f, err := Open(filepath.Join(dir, shard))
		if err != nil {
			return nil, fmt.Errorf("safetensors: shard %s named by %s: %w", shard, indexPath, err)
		}
		shards[shard] = f
		m.files = append(m.files, f)
	}
	for _, tensor := range slices.Sorted(maps.Keys(weightMap)) {
		shard := weightMap[tensor]
		if !shards[shard].Has(tensor) {
			return nil, formatErr(indexPath, tensor, "index places it in %s, which does not hold it", shard)
		}
		m.byName[tensor] = shards[shard]
	}
	for _, f := range m.files {
		for _, tensor := range f.Names() {
			shard := filepath.Base(f.Path())
			switch want, listed := weightMap[tensor]; {
			case !listed:
				return nil, formatErr(f.Path(), tensor, "not listed in %s", IndexFileName)
			case want != shard:
				return nil, formatErr(f.Path(), tensor, "also in %s, where %s places it: a tensor must be in one shard", want, IndexFileName)
			}
		}
	}
	m.names = slices.Sorted(maps.Keys(m.byName))
	ok = true
	return m, nil
}

func fileMap(f *File) map[string]*File {
	m := make(map[string]*File, len(f.names))
	for _, n := range f.names {
		m[n] = f
	}
	return m
}

// parseIndex reads model.safetensors.index.json: the weight map (duplicate
// tensor names are an error) and the metadata, whose values (total_size is a
// number) are rendered as strings.
func parseIndex(path string, raw []byte) (map[string]string, map[string]string, error) {
	var weightMap map[string]string
	meta := map[string]string{}
	dec := newDecoder(raw)
	err := eachMember(dec, func(key string) error {
		switch key {
		case "weight_map":
			weightMap = map[string]string{}
			return eachMember(dec, func(tensor string) error {
				var v any
				if err := dec.Decode(&v); err != nil {
					return err
				}
				shard, ok := v.(string)
				if !ok {
					return fmt.Errorf("weight_map[%q] is %s, expected a file name", tensor, jsonKind(v))
				}
				if shard == "" || shard != filepath.Base(shard) || strings.ContainsAny(shard, `/\`) || shard == ".." || shard == "." {
					return fmt.Errorf("weight_map[%q] is %q, expected a file name in the model directory", tensor, shard)
				}
				weightMap[tensor] = shard
				return nil
			})
		case "metadata":
			var v map[string]json.RawMessage
			if err := dec.Decode(&v); err != nil {
				return fmt.Errorf("metadata: %w", err)
			}
			for k, val := range v {
				var s string
				if json.Unmarshal(val, &s) == nil {
					meta[k] = s
				} else {
					meta[k] = string(val)
				}
			}
			return nil
		default: // tolerate fields added by newer writers
			var skip json.RawMessage
			return dec.Decode(&skip)
		}
	})
	if err != nil {
		return nil, nil, formatErr(path, "", "invalid index: %v", err)
	}
	if weightMap == nil {
		return nil, nil, formatErr(path, "", "index has no weight_map")
	}
	return weightMap, meta, nil
}

// Dir is the model directory.
func (m *Model) Dir() string { return m.dir }

// Files lists the paths of the weight files, sorted.
func (m *Model) Files() []string {
	out := make([]string, len(m.files))
	for i, f := range m.files {
		out[i] = f.Path()
	}
	return out
}

// Names lists every tensor name across the shards, sorted.
func (m *Model) Names() []string { return slices.Clone(m.names) }

// Has reports whether the model holds a tensor called name.
func (m *Model) Has(name string) bool { return m.byName[name] != nil }

// Info describes the tensor called name.
func (m *Model) Info(name string) (Info, error) {
	f := m.byName[name]
	if f == nil {
		return Info{}, fmt.Errorf("%w: %q in model %s", ErrNotFound, name, m.dir)
	}
	return f.Info(name)
}

// Tensor returns the tensor called name from whichever shard holds it, as
// File.Tensor does: the bytes alias a read-only mapping valid until Close.
func (m *Model) Tensor(name string) (Info, []byte, error) {
	f := m.byName[name]
	if f == nil {
		return Info{}, nil, fmt.Errorf("%w: %q in model %s", ErrNotFound, name, m.dir)
	}
	return f.Tensor(name)
}

// Metadata is the "__metadata__" of model.safetensors, or for a sharded
// model the index's "metadata" with values as strings (e.g. total_size).
func (m *Model) Metadata() map[string]string {
	out := maps.Clone(m.metadata)
	if out == nil {
		out = map[string]string{}
	}
	return out
}

// Close unmaps every shard, returning the first error.
func (m *Model) Close() error {
	var errs []error
	for _, f := range m.files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}
