package safetensors

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/herdml/herd/internal/fsutil"
)

// NamedTensor is one tensor to write: Data holds its little-endian row-major
// bytes, exactly ByteLen(DType, Shape) of them.
type NamedTensor struct {
	Name  string
	DType DType
	Shape []int64
	Data  []byte
}

// Write writes tensors and metadata (omitted from the header when empty) as
// one safetensors file at path, atomically: the bytes go to a temporary file
// in the same directory, which is synced and renamed over path, and the
// directory is synced, so a crash leaves either the old file or the new one.
//
// The layout is the reference implementation's: tensors ordered by
// descending dtype alignment then by name (so every tensor's data is aligned
// to its element size), the compact JSON header padded with spaces to a
// multiple of 8 bytes. For the same tensors and metadata the file is
// byte-identical to what safetensors' save_file writes (metadata keys are
// sorted here; Python's order follows its dict).
func Write(path string, tensors []NamedTensor, metadata map[string]string) error {
	order, err := checkTensors(path, tensors)
	if err != nil {
		return err
	}
	hdr := encodeHeader(tensors, order, metadata)
	return writeAtomic(path, func(w io.Writer) error {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(hdr)))
		if _, err := w.Write(n[:]); err != nil {
			return err
		}
		if _, err := w.Write(hdr); err != nil {
			return err
		}
		for _, i := range order {
			if _, err := w.Write(tensors[i].Data); err != nil {
				return err
			}
		}
		return nil
	})
}

// checkTensors validates the tensors to write and returns their order in the file.
func checkTensors(path string, tensors []NamedTensor) ([]int, error) {
	seen := make(map[string]bool, len(tensors))
	order := make([]int, len(tensors))
	for i, t := range tensors {
		order[i] = i
		switch {
		case t.Name == "":
			return nil, fmt.Errorf("safetensors: write %s: tensor %d has an empty name", path, i)
		case t.Name == metadataKey:
			return nil, fmt.Errorf("safetensors: write %s: %q is reserved for metadata, not a tensor name", path, t.Name)
		case !utf8.ValidString(t.Name):
			return nil, fmt.Errorf("safetensors: write %s: tensor name %q is not valid UTF-8", path, t.Name)
		case seen[t.Name]:
			return nil, fmt.Errorf("safetensors: write %s: tensor %q given twice", path, t.Name)
		}
		seen[t.Name] = true
		want, err := ByteLen(t.DType, t.Shape)
		if err != nil {
			return nil, fmt.Errorf("safetensors: write %s: tensor %q: %w", path, t.Name, err)
		}
		if int64(len(t.Data)) != want {
			return nil, fmt.Errorf("safetensors: write %s: tensor %q: %d data bytes, expected %d (%s, shape %v)",
				path, t.Name, len(t.Data), want, t.DType, t.Shape)
		}
	}
	slices.SortFunc(order, func(a, b int) int {
		ta, tb := tensors[a], tensors[b]
		if c := cmp.Compare(dtypeInfo[tb.DType].rank, dtypeInfo[ta.DType].rank); c != 0 {
			return c
		}
		return cmp.Compare(ta.Name, tb.Name)
	})
	return order, nil
}

// encodeHeader renders the header as serde_json does (compact, keys in
// file order, only '"', '\\' and control characters escaped), padded.
func encodeHeader(tensors []NamedTensor, order []int, metadata map[string]string) []byte {
	b := []byte{'{'}
	if len(metadata) > 0 {
		b = appendString(b, metadataKey)
		b = append(b, ':', '{')
		for i, k := range slices.Sorted(maps.Keys(metadata)) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, metadata[k])
		}
		b = append(b, '}')
	}
	var off int64
	for _, i := range order {
		t := tensors[i]
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = appendString(b, t.Name)
		b = append(b, `:{"dtype":`...)
		b = appendString(b, string(t.DType))
		b = append(b, `,"shape":[`...)
		for j, s := range t.Shape {
			if j > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, s, 10)
		}
		b = append(b, `],"data_offsets":[`...)
		b = strconv.AppendInt(b, off, 10)
		off += int64(len(t.Data))
		b = append(b, ',')
		b = strconv.AppendInt(b, off, 10)
		b = append(b, ']', '}')
	}
	b = append(b, '}')
	for len(b)%8 != 0 {
		b = append(b, ' ')
	}
	return b
}

func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\b':
			b = append(b, '\\', 'b')
		case c == '\f':
			b = append(b, '\\', 'f')
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// writeAtomic writes path through a synced temporary file renamed into place.
func writeAtomic(path string, fill func(io.Writer) error) error {
	if err := fsutil.Write(path, fill); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	return nil
}

// File names of a Hugging Face model directory.
const (
	SingleFileName = "model.safetensors"
	IndexFileName  = "model.safetensors.index.json"
)

// ShardFileName is the Hugging Face name of shard i (1-based) of n.
func ShardFileName(i, n int) string {
	return fmt.Sprintf("model-%05d-of-%05d.safetensors", i, n)
}

// WriteSharded writes tensors into dir as Hugging Face transformers does:
// tensors are packed in the given order into shards of at most maxShardBytes
// of tensor data (a larger tensor gets a shard of its own), written as
// model-0000i-of-0000N.safetensors plus model.safetensors.index.json
// ({"metadata": {"total_size": bytes}, "weight_map": {tensor: file}}), or as
// a single model.safetensors with no index when everything fits in one.
// metadata goes into every shard's header. Each file is written atomically,
// the index last; afterwards shards and indexes of an earlier save that the
// new layout does not use are removed, so OpenModel sees only the new one.
func WriteSharded(dir string, tensors []NamedTensor, maxShardBytes int64, metadata map[string]string) error {
	if maxShardBytes <= 0 {
		return fmt.Errorf("safetensors: write %s: maxShardBytes is %d, must be positive", dir, maxShardBytes)
	}
	if _, err := checkTensors(dir, tensors); err != nil {
		return err
	}
	var shards [][]NamedTensor
	var size, total int64
	for _, t := range tensors {
		n := int64(len(t.Data))
		total += n
		if len(shards) == 0 || (size+n > maxShardBytes && size > 0) {
			shards = append(shards, nil)
			size = 0
		}
		shards[len(shards)-1] = append(shards[len(shards)-1], t)
		size += n
	}
	if len(shards) <= 1 {
		if err := Write(filepath.Join(dir, SingleFileName), tensors, metadata); err != nil {
			return err
		}
		return removeStale(dir, map[string]bool{SingleFileName: true})
	}
	keep := map[string]bool{IndexFileName: true}
	weightMap := map[string]string{}
	for i, shard := range shards {
		name := ShardFileName(i+1, len(shards))
		keep[name] = true
		if err := Write(filepath.Join(dir, name), shard, metadata); err != nil {
			return err
		}
		for _, t := range shard {
			weightMap[t.Name] = name
		}
	}
	index := struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}{map[string]int64{"total_size": total}, weightMap}
	js, err := json.MarshalIndent(index, "", "  ")
	if err != nil {
		return fmt.Errorf("safetensors: write %s: %w", dir, err)
	}
	js = append(js, '\n')
	if err := writeAtomic(filepath.Join(dir, IndexFileName), func(w io.Writer) error {
		_, err := w.Write(js)
		return err
	}); err != nil {
		return err
	}
	return removeStale(dir, keep)
}

// removeStale deletes model weight files in dir that are not in keep.
func removeStale(dir string, keep map[string]bool) error {
	stale, err := filepath.Glob(filepath.Join(dir, "model-*-of-*.safetensors"))
	if err != nil {
		return err
	}
	stale = append(stale, filepath.Join(dir, SingleFileName), filepath.Join(dir, IndexFileName))
	for _, p := range stale {
		if keep[filepath.Base(p)] {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("safetensors: remove stale %s: %w", p, err)
		}
	}
	return nil
}
