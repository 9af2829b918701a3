package telemetry

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return rows
}

func readJSONL(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: line %q: %v", path, sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestMetricsFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "artifacts", "run1", "metrics")
	mf, err := NewMetricsFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 24, 10, 0, 0, 123, time.UTC)
	for i := int64(1); i <= 3; i++ {
		err := mf.Train(Step{Step: i, TotalSteps: 10, Epoch: float64(i) / 10, GroupEpoch: 1, Time: at.Add(time.Duration(i) * time.Second),
			Loss: 3 - float64(i)/2, LR: 1e-4, GradNorm: 0.75, Tokens: 2048, TokensPerSec: 4096, StepSeconds: 0.5,
			ComputeSeconds: 0.4, AllReduceSeconds: 0.1, AllReduceBytes: 1 << 20, BusBW: 2.5e8, Workers: 2})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := mf.Train(Step{Step: 4, Loss: math.NaN(), GradNorm: math.Inf(1)}); err != nil {
		t.Fatal(err)
	}
	if err := mf.Eval(Eval{Step: 4, Loss: 2.25, Perplexity: math.Exp(2.25), Tokens: 999}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "score.csv")); !os.IsNotExist(err) {
		t.Error("score.csv exists before any score row")
	}
	if err := mf.Close(); err != nil {
		t.Fatal(err)
	}
	if err := mf.Train(Step{}); err != ErrMetricsClosed {
		t.Errorf("write after Close: %v", err)
	}

	rows := readCSV(t, filepath.Join(dir, "train.csv"))
	if len(rows) != 5 || strings.Join(rows[0], ",") != strings.Join(TrainColumns, ",") {
		t.Fatalf("train.csv rows = %v", rows)
	}
	if rows[1][0] != "1" || rows[1][4] != "2026-11-24T10:00:01.000000123Z" || rows[1][5] != "2.5" || rows[1][6] != "0.0001" {
		t.Errorf("train.csv row 1 = %v", rows[1])
	}
	if rows[4][5] != "NaN" || rows[4][7] != "+Inf" {
		t.Errorf("NaN/Inf in CSV: %v", rows[4])
	}
	lines := readJSONL(t, filepath.Join(dir, "train.jsonl"))
	if len(lines) != 4 {
		t.Fatalf("%d train.jsonl lines", len(lines))
	}
	if l := lines[2]; l["step"] != float64(3) || l["loss"] != 1.5 || l["workers"] != float64(2) || l["busbw"] != 2.5e8 ||
		l["time"] != "2026-11-24T10:00:03.000000123Z" || l["allreduce_bytes"] != float64(1<<20) || len(l) != len(TrainColumns) {
		t.Errorf("train.jsonl line 3 = %v", l)
	}
	if l := lines[3]; l["loss"] != nil || l["grad_norm"] != nil {
		t.Errorf("NaN/Inf in JSONL: %v, want null", l)
	}
	if _, err := time.Parse(time.RFC3339Nano, lines[3]["time"].(string)); err != nil {
		t.Errorf("a zero Time was not stamped: %v", err)
	}
	ev := readJSONL(t, filepath.Join(dir, "eval.jsonl"))
	if len(ev) != 1 || ev[0]["loss"] != 2.25 || ev[0]["tokens"] != float64(999) {
		t.Errorf("eval.jsonl = %v", ev)
	}
	if r := readCSV(t, filepath.Join(dir, "eval.csv")); len(r) != 2 || strings.Join(r[0], ",") != strings.Join(EvalColumns, ",") {
		t.Errorf("eval.csv = %v", r)
	}
}

// TestMetricsFilesResume: a resumed run appends after the rows there, with
// no second header, and a line torn by a crash is cut off first.
func TestMetricsFilesResume(t *testing.T) {
	dir := t.TempDir()
	mf, err := NewMetricsFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	mf.Score(ScoreRow{RowsDone: 10, RowsTotal: 100, BatchesDone: 1, BatchesTotal: 10, RowsPerSec: 5})
	mf.Close()
	for _, name := range []string{"score.csv", "score.jsonl"} {
		f, _ := os.OpenFile(filepath.Join(dir, name), os.O_APPEND|os.O_WRONLY, 0)
		f.WriteString("2026-11-24T10:00:00Z,20,10") // no newline: torn
		f.Close()
	}
	mf, err = NewMetricsFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := mf.Score(ScoreRow{RowsDone: 30, RowsTotal: 100, BatchesDone: 3, BatchesTotal: 10, BatchesRetried: 1}); err != nil {
		t.Fatal(err)
	}
	mf.Close()
	rows := readCSV(t, filepath.Join(dir, "score.csv"))
	if len(rows) != 3 || rows[0][0] != "time" || rows[1][1] != "10" || rows[2][1] != "30" || rows[2][5] != "1" {
		t.Errorf("score.csv after resume = %v", rows)
	}
	if lines := readJSONL(t, filepath.Join(dir, "score.jsonl")); len(lines) != 2 || lines[1]["rows_done"] != float64(30) {
		t.Errorf("score.jsonl after resume = %v", lines)
	}

	// A file whose columns differ is not appended to.
	os.WriteFile(filepath.Join(dir, "train.csv"), []byte("step,loss\n1,2\n"), 0o644)
	mf, _ = NewMetricsFiles(dir)
	if err := mf.Train(Step{Step: 1}); err == nil || !strings.Contains(err.Error(), "move the old file away") {
		t.Errorf("column mismatch: %v", err)
	}
	mf.Close()
}

func TestMetricsFilesConcurrent(t *testing.T) {
	dir := t.TempDir()
	mf, err := NewMetricsFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				mf.Train(Step{Step: int64(g*100 + i), Loss: 1})
				mf.Eval(Eval{Step: int64(i)})
			}
		}()
	}
	wg.Wait()
	mf.Close()
	if rows := readCSV(t, filepath.Join(dir, "train.csv")); len(rows) != 201 {
		t.Errorf("train.csv has %d rows, want 201", len(rows))
	}
	if lines := readJSONL(t, filepath.Join(dir, "eval.jsonl")); len(lines) != 200 {
		t.Errorf("eval.jsonl has %d lines, want 200", len(lines))
	}
}
