package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func testTensors(n int) []NamedTensor {
	var out []NamedTensor
	for i := 0; i < n; i++ {
		vals := make([]float32, 4*(i+1))
		for j := range vals {
			vals[j] = float32(i*100 + j)
		}
		data, _ := FromFloat32(F32, vals)
		out = append(out, NamedTensor{
			Name: fmt.Sprintf("model.layers.%d.weight", i), DType: F32, Shape: []int64{int64(i + 1), 4}, Data: data,
		})
	}
	return out
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func checkModel(t *testing.T, dir string, tensors []NamedTensor) *Model {
	t.Helper()
	m, err := OpenModel(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	var want []string
	for _, nt := range tensors {
		want = append(want, nt.Name)
		info, data, err := m.Tensor(nt.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(info, Info{nt.DType, nt.Shape}) || !bytes.Equal(data, nt.Data) {
			t.Errorf("%s differs after the round trip", nt.Name)
		}
	}
	slices.Sort(want)
	if !reflect.DeepEqual(m.Names(), want) {
		t.Errorf("Names = %v, want %v", m.Names(), want)
	}
	if _, _, err := m.Tensor("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing tensor: %v", err)
	}
	return m
}

func TestWriteShardedAndOpenModel(t *testing.T) {
	dir := t.TempDir()
	tensors := testTensors(5) // 16, 32, 48, 64, 80 bytes
	meta := map[string]string{"format": "pt"}
	if err := WriteSharded(dir, tensors, 100, meta); err != nil {
		t.Fatal(err)
	}
	wantFiles := []string{IndexFileName, ShardFileName(1, 3), ShardFileName(2, 3), ShardFileName(3, 3)}
	slices.Sort(wantFiles)
	if got := listDir(t, dir); !reflect.DeepEqual(got, wantFiles) {
		t.Fatalf("files = %v, want %v", got, wantFiles)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, IndexFileName))
	var index struct {
		Metadata  map[string]any    `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(raw, &index); err != nil {
		t.Fatal(err)
	}
	if index.Metadata["total_size"] != float64(240) {
		t.Errorf("total_size = %v, want 240", index.Metadata["total_size"])
	}
	// 16+32+48 = 96 | 64 | 80: in order, a shard closes before it would pass 100 bytes.
	wantMap := map[string]string{
		"model.layers.0.weight": "model-00001-of-00003.safetensors",
		"model.layers.1.weight": "model-00001-of-00003.safetensors",
		"model.layers.2.weight": "model-00001-of-00003.safetensors",
		"model.layers.3.weight": "model-00002-of-00003.safetensors",
		"model.layers.4.weight": "model-00003-of-00003.safetensors",
	}
	if !reflect.DeepEqual(index.WeightMap, wantMap) {
		t.Errorf("weight_map = %v", index.WeightMap)
	}
	m := checkModel(t, dir, tensors)
	if got := m.Metadata()["total_size"]; got != "240" {
		t.Errorf("model metadata total_size = %q", got)
	}
	if len(m.Files()) != 3 {
		t.Errorf("Files = %v", m.Files())
	}
	m.Close()

	// Saving again so that everything fits in one file replaces the shards.
	if err := WriteSharded(dir, tensors, 1<<20, meta); err != nil {
		t.Fatal(err)
	}
	if got := listDir(t, dir); !reflect.DeepEqual(got, []string{SingleFileName}) {
		t.Fatalf("files after the single-file save = %v", got)
	}
	m = checkModel(t, dir, tensors)
	if !reflect.DeepEqual(m.Metadata(), meta) {
		t.Errorf("single-file metadata = %v", m.Metadata())
	}

	// A tensor larger than the shard size gets a shard of its own.
	dir2 := t.TempDir()
	if err := WriteSharded(dir2, tensors, 10, nil); err != nil {
		t.Fatal(err)
	}
	if got := len(listDir(t, dir2)); got != 6 {
		t.Errorf("%d files for 5 oversized tensors, want 5 shards + index", got)
	}
	checkModel(t, dir2, tensors)
}

func TestOpenModelErrors(t *testing.T) {
	shardA, shardB := ShardFileName(1, 2), ShardFileName(2, 2)
	tensors := testTensors(3)
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{"empty dir", func(t *testing.T, dir string) {}, "neither model.safetensors nor model.safetensors.index.json"},
		{"tensor missing from its shard", func(t *testing.T, dir string) {
			writeShards(t, dir, map[string][]NamedTensor{shardA: tensors[:1], shardB: tensors[1:2]},
				map[string]string{tensors[0].Name: shardA, tensors[1].Name: shardB, tensors[2].Name: shardB})
		}, `tensor "model.layers.2.weight": index places it in ` + shardB + `, which does not hold it`},
		{"tensor in two shards", func(t *testing.T, dir string) {
			writeShards(t, dir, map[string][]NamedTensor{shardA: tensors[:2], shardB: tensors[1:]},
				map[string]string{tensors[0].Name: shardA, tensors[1].Name: shardB, tensors[2].Name: shardB})
		}, `tensor "model.layers.1.weight": also in ` + shardB},
		{"tensor not in the index", func(t *testing.T, dir string) {
			writeShards(t, dir, map[string][]NamedTensor{shardA: tensors[:2], shardB: tensors[2:]},
				map[string]string{tensors[0].Name: shardA, tensors[2].Name: shardB})
		}, `tensor "model.layers.1.weight": not listed in model.safetensors.index.json`},
		{"missing shard", func(t *testing.T, dir string) {
			writeShards(t, dir, map[string][]NamedTensor{shardA: tensors},
				map[string]string{tensors[0].Name: shardA, tensors[1].Name: shardB})
		}, "shard " + shardB + " named by"},
		{"shard outside the dir", func(t *testing.T, dir string) {
			writeIndex(t, dir, `{"weight_map":{"a":"../model.safetensors"}}`)
		}, `weight_map["a"] is "../model.safetensors", expected a file name`},
		{"duplicate weight_map key", func(t *testing.T, dir string) {
			writeIndex(t, dir, `{"weight_map":{"a":"x.safetensors","a":"y.safetensors"}}`)
		}, `duplicate key "a"`},
		{"no weight_map", func(t *testing.T, dir string) {
			writeIndex(t, dir, `{"metadata":{"total_size":0}}`)
		}, "index has no weight_map"},
		{"corrupt shard", func(t *testing.T, dir string) {
			writeIndex(t, dir, `{"weight_map":{"a":"`+shardA+`"}}`)
			os.WriteFile(filepath.Join(dir, shardA), []byte("garbage!garbage!"), 0o644)
		}, "header length"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, dir)
			m, err := OpenModel(dir)
			if err == nil {
				m.Close()
				t.Fatal("OpenModel succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func writeShards(t *testing.T, dir string, shards map[string][]NamedTensor, weightMap map[string]string) {
	t.Helper()
	for name, ts := range shards {
		if err := Write(filepath.Join(dir, name), ts, nil); err != nil {
			t.Fatal(err)
		}
	}
	js, _ := json.Marshal(map[string]any{"metadata": map[string]any{"total_size": 1}, "weight_map": weightMap})
	writeIndex(t, dir, string(js))
}

func writeIndex(t *testing.T, dir, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, IndexFileName), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// As transformers does, model.safetensors wins over an index beside it.
func TestOpenModelPrefersSingleFile(t *testing.T) {
	dir := t.TempDir()
	tensors := testTensors(2)
	if err := Write(filepath.Join(dir, SingleFileName), tensors, nil); err != nil {
		t.Fatal(err)
	}
	writeIndex(t, dir, `{"weight_map":{"x":"missing.safetensors"}}`)
	checkModel(t, dir, tensors)
}
