package telemetry

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Step is one logged training step: what the metrics files, the metric
// instruments and the progress line show. Times are wall seconds.
type Step struct {
	Step       int64     `json:"step"`        // global optimizer step, from 1
	TotalSteps int64     `json:"total_steps"` // of the job; 0 when unknown
	Epoch      float64   `json:"epoch"`       // data epochs done, fractional (1.5 = half way through the second)
	GroupEpoch int64     `json:"group_epoch"` // membership epoch of the worker group
	Time       time.Time `json:"time"`
	Loss       float64   `json:"loss"`
	LR         float64   `json:"lr"`
	GradNorm   float64   `json:"grad_norm"`
	// Tokens is the step's trained tokens over all workers; TokensPerSec is
	// Tokens / StepSeconds.
	Tokens           int64   `json:"tokens"`
	TokensPerSec     float64 `json:"tokens_per_sec"`
	StepSeconds      float64 `json:"step_seconds"`
	ComputeSeconds   float64 `json:"compute_seconds"`
	AllReduceSeconds float64 `json:"allreduce_seconds"`
	AllReduceBytes   int64   `json:"allreduce_bytes"`
	BusBW            float64 `json:"busbw"` // bytes/s
	Workers          int     `json:"workers"`
}

// Eval is one evaluation during or after training.
type Eval struct {
	Step       int64     `json:"step"`
	Epoch      float64   `json:"epoch"`
	Time       time.Time `json:"time"`
	Loss       float64   `json:"loss"`
	Perplexity float64   `json:"perplexity"`
	Tokens     int64     `json:"tokens"`
	Seconds    float64   `json:"seconds"`
}

// ScoreRow is a scoring job's progress at one moment.
type ScoreRow struct {
	Time           time.Time `json:"time"`
	RowsDone       int64     `json:"rows_done"`
	RowsTotal      int64     `json:"rows_total"`
	BatchesDone    int       `json:"batches_done"`
	BatchesTotal   int       `json:"batches_total"`
	BatchesRetried int       `json:"batches_retried"`
	RowsPerSec     float64   `json:"rows_per_sec"`
}

// CSV columns, in order; the same names as the JSON fields.
var (
	TrainColumns = []string{"step", "total_steps", "epoch", "group_epoch", "time", "loss", "lr", "grad_norm", "tokens", "tokens_per_sec", "step_seconds", "compute_seconds", "allreduce_seconds", "allreduce_bytes", "busbw", "workers"}
	EvalColumns  = []string{"step", "epoch", "time", "loss", "perplexity", "tokens", "seconds"}
	ScoreColumns = []string{"time", "rows_done", "rows_total", "batches_done", "batches_total", "batches_retried", "rows_per_sec"}
)

func (s Step) record() []string {
	return []string{i64(s.Step), i64(s.TotalSteps), f64(s.Epoch), i64(s.GroupEpoch), ts(s.Time), f64(s.Loss), f64(s.LR), f64(s.GradNorm),
		i64(s.Tokens), f64(s.TokensPerSec), f64(s.StepSeconds), f64(s.ComputeSeconds), f64(s.AllReduceSeconds),
		i64(s.AllReduceBytes), f64(s.BusBW), strconv.Itoa(s.Workers)}
}

func (e Eval) record() []string {
	return []string{i64(e.Step), f64(e.Epoch), ts(e.Time), f64(e.Loss), f64(e.Perplexity), i64(e.Tokens), f64(e.Seconds)}
}

func (r ScoreRow) record() []string {
	return []string{ts(r.Time), i64(r.RowsDone), i64(r.RowsTotal), strconv.Itoa(r.BatchesDone), strconv.Itoa(r.BatchesTotal),
		strconv.Itoa(r.BatchesRetried), f64(r.RowsPerSec)}
}

func i64(v int64) string   { return strconv.FormatInt(v, 10) }
func f64(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
func ts(t time.Time) string {
	return t.UTC().Format(time.RFC3339Nano)
}

// MetricsSyncInterval is how often MetricsFiles asks the OS to put written
// rows on disk. Rows reach the OS (and survive the process dying) as they
// are written; the interval bounds what a machine crash can lose.
const MetricsSyncInterval = 10 * time.Second

// MetricsFiles appends a run's metrics to DIR/train.jsonl + train.csv,
// DIR/eval.jsonl + eval.csv and DIR/score.jsonl + score.csv (DIR is
// artifacts/<run>/metrics). A file is created at its first row; a CSV
// header is written once, when the file is new. Every row goes out in one
// unbuffered append, so a process that dies leaves only complete lines;
// reopening the directory (a resumed run) cuts off a line left incomplete by
// a machine crash and appends after the rows already there. A resumed run
// may log a step again: readers keep the last row of each step. Safe for
// concurrent use; Close at the end.
type MetricsFiles struct {
	dir string

	mu                 sync.Mutex
	train, eval, score *table
	closed             bool
}

// ErrMetricsClosed is returned by writes after Close.
var ErrMetricsClosed = errors.New("telemetry: metrics files are closed")

// NewMetricsFiles prepares dir (creating it) for the metrics files.
func NewMetricsFiles(dir string) (*MetricsFiles, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("telemetry: metrics dir: %w", err)
	}
	return &MetricsFiles{dir: dir}, nil
}

// Dir is the directory the files are in.
func (m *MetricsFiles) Dir() string { return m.dir }

// Train appends one training step; a zero Time is stamped with now.
func (m *MetricsFiles) Train(s Step) error {
	if s.Time.IsZero() {
		s.Time = time.Now()
	}
	return m.write(&m.train, "train", TrainColumns, s.record())
}

// Eval appends one evaluation; a zero Time is stamped with now.
func (m *MetricsFiles) Eval(e Eval) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	return m.write(&m.eval, "eval", EvalColumns, e.record())
}

// Score appends one scoring progress row; a zero Time is stamped with now.
func (m *MetricsFiles) Score(r ScoreRow) error {
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	return m.write(&m.score, "score", ScoreColumns, r.record())
}

// jsonLine renders a record as a JSON object with the columns as keys:
// numbers as numbers, NaN and infinities (a diverged loss) as null, which
// encoding/json cannot write, and anything else as a string.
func jsonLine(cols, rec []string) []byte {
	b := []byte{'{'}
	for i, c := range cols {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, c)
		b = append(b, ':')
		v := rec[i]
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			if math.IsNaN(f) || math.IsInf(f, 0) {
				b = append(b, "null"...)
			} else {
				b = append(b, v...)
			}
			continue
		}
		q, _ := json.Marshal(v)
		b = append(b, q...)
	}
	return append(b, '}', '\n')
}

func (m *MetricsFiles) write(t **table, name string, cols []string, rec []string) error {
	line := jsonLine(cols, rec)
	var row bytes.Buffer
	w := csv.NewWriter(&row)
	_ = w.Write(rec)
	w.Flush()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrMetricsClosed
	}
	if *t == nil {
		nt, err := openTable(m.dir, name, cols)
		if err != nil {
			return err
		}
		*t = nt
	}
	return (*t).append(line, row.Bytes())
}

// Close syncs and closes the files.
func (m *MetricsFiles) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	var errs []error
	for _, t := range []*table{m.train, m.eval, m.score} {
		if t != nil {
			errs = append(errs, t.close())
		}
	}
	return errors.Join(errs...)
}

// table is one JSONL + CSV pair.
type table struct {
	jsonl, csv *os.File
	lastSync   time.Time
}

func openTable(dir, name string, cols []string) (*table, error) {
	jsonl, err := openAppend(filepath.Join(dir, name+".jsonl"))
	if err != nil {
		return nil, err
	}
	csvPath := filepath.Join(dir, name+".csv")
	c, err := openAppend(csvPath)
	if err != nil {
		jsonl.Close()
		return nil, err
	}
	t := &table{jsonl: jsonl, csv: c, lastSync: time.Now()}
	header, err := firstLine(c)
	if err == nil && header == "" {
		_, err = c.WriteString(strings.Join(cols, ",") + "\n")
	} else if err == nil && header != strings.Join(cols, ",") {
		err = fmt.Errorf("telemetry: %s has columns %q, this herd writes %q: move the old file away", csvPath, header, strings.Join(cols, ","))
	}
	if err != nil {
		t.close()
		return nil, err
	}
	return t, nil
}

// openAppend opens path for appending, first cutting off an incomplete last
// line (a write torn by a machine crash).
func openAppend(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("telemetry: metrics file: %w", err)
	}
	if err := trimTornLine(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("telemetry: metrics file %s: %w", path, err)
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, err
	}
	// Appends by position are fine: one writer per file, under the mutex.
	return f, nil
}

func trimTornLine(f *os.File) error {
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return err
	}
	size := st.Size()
	buf := make([]byte, 4096)
	end := size
	for end > 0 {
		n := int64(len(buf))
		if n > end {
			n = end
		}
		if _, err := f.ReadAt(buf[:n], end-n); err != nil {
			return err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			keep := end - n + int64(i) + 1
			if keep == size {
				return nil
			}
			return f.Truncate(keep)
		}
		end -= n
	}
	return f.Truncate(0)
}

func firstLine(f *os.File) (string, error) {
	line, err := bufio.NewReader(io.NewSectionReader(f, 0, 1<<20)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func (t *table) append(jsonLine, csvLine []byte) error {
	if _, err := t.jsonl.Write(jsonLine); err != nil {
		return fmt.Errorf("telemetry: %s: %w", t.jsonl.Name(), err)
	}
	if _, err := t.csv.Write(csvLine); err != nil {
		return fmt.Errorf("telemetry: %s: %w", t.csv.Name(), err)
	}
	if time.Since(t.lastSync) >= MetricsSyncInterval {
		t.lastSync = time.Now()
		return errors.Join(t.jsonl.Sync(), t.csv.Sync())
	}
	return nil
}

func (t *table) close() error {
	var errs []error
	for _, f := range []*os.File{t.jsonl, t.csv} {
		errs = append(errs, f.Sync(), f.Close())
	}
	return errors.Join(slices.DeleteFunc(errs, func(e error) bool { return e == nil })...)
}
