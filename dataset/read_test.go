package dataset

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
)

// readAll reads every row of path, collecting row errors; it stops at the
// first fatal error.
func readAll(t *testing.T, path string) (rows []Row, rowErrs []string, fatal error) {
	t.Helper()
	rr, err := OpenRows(path)
	if err != nil {
		return nil, nil, err
	}
	defer rr.Close()
	for {
		row, err := rr.Next()
		if errors.Is(err, io.EOF) {
			return rows, rowErrs, nil
		}
		if errors.Is(err, ErrBadRow) {
			rowErrs = append(rowErrs, err.Error())
			continue
		}
		if err != nil {
			return rows, rowErrs, err
		}
		rows = append(rows, row)
	}
}

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	var data []byte
	if strings.HasSuffix(name, ".gz") {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write([]byte(content))
		zw.Close()
		data = buf.Bytes()
	} else {
		data = []byte(content)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// rowSummary renders rows as "src text" for comparisons.
func rowSummary(rows []Row, field string) []string {
	var out []string
	for _, r := range rows {
		b, _ := json.Marshal(r.Fields[field])
		out = append(out, r.Src.String()+" "+string(b))
	}
	return out
}

func TestReaders(t *testing.T) {
	long := strings.Repeat("x", 3<<20) // longer than the reader's buffer
	cases := []struct {
		name, file, content string
		want                []string // rowSummary of field "text", with the file name stripped
		rowErrs             []string // row error messages, file name stripped
		fatal               string   // substring of the fatal error
	}{
		{name: "jsonl", file: "a.jsonl", content: "{\"text\": \"one\"}\n\n  \n{\"text\": \"two\", \"n\": 2}\n{\"text\": \"three\"}",
			want: []string{":1 \"one\"", ":4 \"two\"", ":5 \"three\""}},
		{name: "jsonl crlf bom", file: "a.jsonl", content: "\uFEFF{\"text\": \"one\"}\r\n{\"text\": \"two\"}\r\n",
			want: []string{":1 \"one\"", ":2 \"two\""}},
		{name: "jsonl bad lines", file: "a.jsonl", content: "{\"text\": \"one\"}\n{\"text\": \n[1, 2]\n{\"text\": \"x\"} {}\n{\"text\": \"five\"}\n",
			want:    []string{":1 \"one\"", ":5 \"five\""},
			rowErrs: []string{":2: not a JSON object: unexpected end of JSON input", ":3: not a JSON object: got a list", ":4: not a JSON object: extra data after the object"}},
		{name: "jsonl long line", file: "a.jsonl", content: "{\"text\": \"" + long + "\"}\n{\"text\": \"b\"}\n",
			want: []string{":1 \"" + long + "\"", ":2 \"b\""}},
		{name: "jsonl gz", file: "a.jsonl.gz", content: "{\"text\": \"one\"}\n{\"text\": \"two\"}\n",
			want: []string{":1 \"one\"", ":2 \"two\""}},
		{name: "ndjson", file: "a.ndjson", content: "{\"text\": \"one\"}\n", want: []string{":1 \"one\""}},
		{name: "json array", file: "a.json", content: "[\n {\"text\": \"one\"},\n {\"text\": \"two\"}\n]\n",
			want: []string{"[0] \"one\"", "[1] \"two\""}},
		{name: "json array non-object", file: "a.json", content: `[{"text": "one"}, 7, {"text": "three"}]`,
			want: []string{"[0] \"one\"", "[2] \"three\""}, rowErrs: []string{"[1]: not a JSON object: got a number"}},
		{name: "json array gz bom", file: "a.json.gz", content: "\uFEFF[{\"text\": \"one\"}]", want: []string{"[0] \"one\""}},
		{name: "json empty array", file: "a.json", content: "[]"},
		{name: "json syntax error", file: "a.json", content: `[{"text": "one"}, {"text": }]`,
			want: []string{"[0] \"one\""}, fatal: "element 1: invalid character '}'"},
		{name: "json truncated", file: "a.json", content: `[{"text": "one"}, {"text"`,
			want: []string{"[0] \"one\""}, fatal: "element 1: unexpected end of JSON input"},
		{name: "json trailing data", file: "a.json", content: `[{"text": "one"}] {}`,
			want: []string{"[0] \"one\""}, fatal: "extra data after the array"},
		{name: "json object", file: "a.json", content: `{"data": []}`, fatal: "want a JSON array of objects, got an object"},
		{name: "json empty", file: "a.json", content: "", fatal: "empty file"},
		{name: "csv", file: "a.csv", content: "id,text\n1,one\n2,\"two\nlines, \"\"quoted\"\"\"\n3,three\n",
			want: []string{":2 \"one\"", ":3 \"two\\nlines, \\\"quoted\\\"\"", ":5 \"three\""}},
		{name: "csv bom crlf", file: "a.csv", content: "\uFEFFtext,id\r\none,1\r\n", want: []string{":2 \"one\""}},
		{name: "csv field count", file: "a.csv", content: "id,text\n1,one\n2\n3,three,extra\n4,four\n",
			want:    []string{":2 \"one\"", ":5 \"four\""},
			rowErrs: []string{":3: 1 fields, the header has 2", ":4: 3 fields, the header has 2"}},
		{name: "csv bad quote", file: "a.csv", content: "id,text\n1,o\"ne\n2,two\n",
			want: []string{":3 \"two\""}, rowErrs: []string{`:2: malformed CSV: bare " in non-quoted-field`}},
		{name: "csv gz", file: "a.csv.gz", content: "text\none\n", want: []string{":2 \"one\""}},
		{name: "csv empty", file: "a.csv", content: "", fatal: "want a header row"},
		{name: "csv duplicate column", file: "a.csv", content: "text,text\na,b\n", fatal: `column "text" appears twice`},
		{name: "unknown extension", file: "a.txt", content: "hi", fatal: "want a .jsonl, .json, .csv or .parquet file"},
		{name: "parquet gz", file: "a.parquet.gz", content: "x", fatal: "compressed inside"},
		{name: "bad gzip", file: "a.jsonl.gz", content: "", fatal: "EOF"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, c.file)
			if c.name == "bad gzip" {
				os.WriteFile(path, []byte("not gzip"), 0o644)
			} else {
				writeFile(t, dir, c.file, c.content)
			}
			rows, rowErrs, err := readAll(t, path)
			strip := func(ss []string) []string {
				for i := range ss {
					ss[i] = strings.ReplaceAll(ss[i], path, "")
				}
				return ss
			}
			if c.fatal == "" && err != nil {
				t.Fatalf("error %v", err)
			}
			if c.fatal != "" && (err == nil || !strings.Contains(err.Error(), c.fatal)) {
				t.Fatalf("error %v, want one containing %q", err, c.fatal)
			}
			if got := strip(rowSummary(rows, "text")); strings.Join(got, "|") != strings.Join(c.want, "|") {
				if len(c.want) > 0 && len(c.want[0]) > 100 {
					t.Fatalf("rows differ (%d, want %d)", len(got), len(c.want))
				}
				t.Errorf("rows\n got %q\nwant %q", got, c.want)
			}
			if got := strip(rowErrs); strings.Join(got, "|") != strings.Join(c.rowErrs, "|") {
				t.Errorf("row errors\n got %q\nwant %q", got, c.rowErrs)
			}
		})
	}
}

func TestReaderValues(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "a.jsonl", `{"text": "t", "n": 12345678901234567890, "f": 1.5, "b": true, "z": null, "l": [1, "a"], "o": {"k": "v"}}`+"\n")
	rows, _, err := readAll(t, path)
	if err != nil || len(rows) != 1 {
		t.Fatal(rows, err)
	}
	if n, ok := rows[0].Fields["n"].(json.Number); !ok || n.String() != "12345678901234567890" {
		t.Errorf("big number %#v: want a json.Number keeping its digits", rows[0].Fields["n"])
	}
	if rows[0].Src != (Source{File: path, Line: 1, Index: 0}) {
		t.Errorf("source %+v", rows[0].Src)
	}
}

type pqMessage struct {
	Role    string `parquet:"role"`
	Content string `parquet:"content"`
}

type pqRow struct {
	Text     string      `parquet:"text"`
	Input    *string     `parquet:"input,optional"`
	N        int64       `parquet:"n"`
	Raw      []byte      `parquet:"raw"`
	Messages []pqMessage `parquet:"messages,list"`
}

func writeParquet[T any](t testing.TB, path string, rows []T, rowsPerGroup int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := parquet.NewGenericWriter[T](f, parquet.MaxRowsPerRowGroup(int64(rowsPerGroup)))
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestParquetReader(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.parquet")
	in := "ctx"
	var rows []pqRow
	for i := range 150 { // several row groups and read batches
		r := pqRow{Text: strings.Repeat("t", i+1), N: int64(i), Raw: []byte{'r', byte('a' + i%26)}}
		if i%2 == 0 {
			r.Input = &in
			r.Messages = []pqMessage{{"user", "q" + r.Text}, {"assistant", "a"}}
		}
		rows = append(rows, r)
	}
	writeParquet(t, path, rows, 40)
	got, rowErrs, err := readAll(t, path)
	if err != nil || len(rowErrs) > 0 {
		t.Fatal(err, rowErrs)
	}
	if len(got) != len(rows) {
		t.Fatalf("%d rows, want %d", len(got), len(rows))
	}
	for i, r := range got {
		if r.Src != (Source{File: path, Index: i}) || r.Src.String() != path+"["+itoa(i)+"]" {
			t.Fatalf("row %d: source %+v", i, r.Src)
		}
		if r.Fields["text"] != rows[i].Text || r.Fields["raw"] != string(rows[i].Raw) {
			t.Fatalf("row %d: %#v", i, r.Fields)
		}
		if i%2 == 1 {
			if r.Fields["input"] != nil {
				t.Fatalf("row %d: input %#v, want nil", i, r.Fields["input"])
			}
			continue
		}
		msgs, ok := r.Fields["messages"].([]any)
		if r.Fields["input"] != "ctx" || !ok || len(msgs) != 2 {
			t.Fatalf("row %d: %#v", i, r.Fields)
		}
		if m, _ := msgs[0].(map[string]any); m["role"] != "user" || m["content"] != "q"+rows[i].Text {
			t.Fatalf("row %d: message %#v", i, msgs[0])
		}
	}
	bad := writeFile(t, dir, "bad.parquet", "PAR1 not really")
	if _, _, err := readAll(t, bad); !errors.Is(err, ErrFormat) {
		t.Errorf("bad parquet: %v", err)
	}
}

// Readers stream: reading a file holds one row at a time, whatever its size.
func TestReadersStream(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 2 × 20 MB")
	}
	dir := t.TempDir()
	pad := strings.Repeat("x", 1000)
	for _, name := range []string{"big.json", "big.jsonl"} {
		path := filepath.Join(dir, name)
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		w := bufio.NewWriter(f)
		if name == "big.json" {
			w.WriteString("[")
		}
		const n = 20000
		for i := range n {
			if i > 0 && name == "big.json" {
				w.WriteString(",")
			}
			fmt.Fprintf(w, "{\"text\": \"%d %s\"}\n", i, pad)
		}
		if name == "big.json" {
			w.WriteString("]")
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		rr, err := OpenRows(path)
		if err != nil {
			t.Fatal(err)
		}
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		var peak uint64
		rows := 0
		for {
			_, err := rr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if rows++; rows%5000 == 0 {
				runtime.GC() // live heap, not garbage awaiting collection
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				peak = max(peak, m.HeapInuse)
			}
		}
		rr.Close()
		if rows != n {
			t.Fatalf("%s: %d rows", name, rows)
		}
		if grew := int64(peak) - int64(before.HeapInuse); grew > 4<<20 {
			t.Errorf("%s: the heap grew by %d MB reading a 20 MB file", name, grew>>20)
		}
	}
}
