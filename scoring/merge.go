package scoring

import (
	"bufio"
	"bytes"
	"container/heap"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"

	"github.com/herdml/herd/internal/fsutil"
)

// Errors of the Merger. A batch result refused with ErrUnknownBatch or
// ErrBatchMismatch is not accepted: re-issue the batch.
var (
	ErrUnknownBatch  = errors.New("scoring: unknown batch id")
	ErrBatchMismatch = errors.New("scoring: batch result does not hold exactly the batch's rows")
	ErrRowFailed     = errors.New("scoring: a row could not be scored and scoring.on_row_error is fail")
	ErrIncomplete    = errors.New("scoring: batches are missing")
	ErrFinished      = errors.New("scoring: merge already finished")
	ErrSpoolMismatch = errors.New("scoring: spool directory belongs to another plan; remove it to start over")
	ErrBadPlan       = errors.New("scoring: plan does not cover rows 0..n-1 exactly once")
)

// Output file names.
const (
	PredictionsFile = "predictions.jsonl"
	MetricsFile     = "metrics.json"
)

// DefaultMemRows is the default MergerOptions.MemRows.
const DefaultMemRows = 1 << 16

// mergeFanIn is the most spool files merged at once.
const mergeFanIn = 128

// MergerOptions configure a Merger.
type MergerOptions struct {
	// Dir receives predictions.jsonl and metrics.json; it is created if
	// missing.
	Dir string
	// SpoolDir holds the spilled batches; default Dir/.scoring-spool. A spool
	// left by an interrupted merge of the same plan is taken up again: its
	// batches count as accepted.
	SpoolDir string
	// Plan is the job's batching plan; its batches must cover rows 0..n-1
	// exactly once.
	Plan []Batch
	// Spec is the scoring configuration: Task and Metrics choose what is
	// computed, OnRowError "fail" refuses rows with errors, and the whole Spec
	// is repeated in metrics.json.
	Spec Spec
	// MemRows is how many accepted rows are kept in memory before they are
	// sorted and spilled to a spool file, > 0; default DefaultMemRows.
	MemRows int
}

// Merger accepts batch results exactly once each, in any order, and writes
// predictions.jsonl in input order and metrics.json. Memory holds the plan,
// one bit per batch, and at most MemRows rows (plus the batch that crosses
// the limit) as encoded lines; the rest waits in sorted spool files that
// Finish merges. It is safe for concurrent use.
type Merger struct {
	opt         MergerOptions
	rows        int
	fingerprint string

	mu         sync.Mutex
	accepted   []bool
	nAccepted  int
	duplicates int64
	total      *Accumulator // every accepted row
	buf        []spoolRow   // accepted rows not yet spilled
	bufAcc     *Accumulator // the rows in buf
	bufBatches []int
	bufDups    int64
	runs       []string // spool files, oldest first
	nextRun    int
	finished   bool
}

type spoolRow struct {
	index int64
	line  []byte
}

// spoolHeader is the first line of a spool file.
type spoolHeader struct {
	Plan       string          `json:"plan"`
	Batches    []int           `json:"batches"`
	Rows       int             `json:"rows"`
	Duplicates int64           `json:"duplicates"`
	Acc        json.RawMessage `json:"acc"`
	// Replaces names the spool files a compaction merged into this one; if
	// they are still there (a crash before their removal) they are ignored.
	Replaces []string `json:"replaces,omitempty"`
}

// NewMerger starts a merge, taking up the spool of an interrupted merge of
// the same plan if SpoolDir has one.
func NewMerger(opt MergerOptions) (*Merger, error) {
	if opt.MemRows <= 0 {
		opt.MemRows = DefaultMemRows
	}
	if opt.SpoolDir == "" {
		opt.SpoolDir = filepath.Join(opt.Dir, ".scoring-spool")
	}
	m := &Merger{opt: opt, accepted: make([]bool, len(opt.Plan))}
	fp, rows, err := planFingerprint(opt.Spec.Task, opt.Plan)
	if err != nil {
		return nil, err
	}
	m.fingerprint, m.rows = fp, rows
	m.total = NewAccumulator(opt.Spec.Task, opt.Spec.Metrics)
	m.bufAcc = NewAccumulator(opt.Spec.Task, opt.Spec.Metrics)
	if err := os.MkdirAll(opt.SpoolDir, 0o755); err != nil {
		return nil, fmt.Errorf("scoring: spool: %w", err)
	}
	if err := m.recover(); err != nil {
		return nil, err
	}
	return m, nil
}

// planFingerprint checks that the plan partitions 0..n-1 and hashes it with
// the task, so a spool is only ever taken up by the job that wrote it.
func planFingerprint(task string, plan []Batch) (string, int, error) {
	n := 0
	for i := range plan {
		n += len(plan[i].Rows)
	}
	seen := make([]bool, n)
	h := sha256.New()
	h.Write([]byte(task))
	var b [8]byte
	for i := range plan {
		if plan[i].ID != i {
			return "", 0, fmt.Errorf("%w: batch %d has id %d", ErrBadPlan, i, plan[i].ID)
		}
		binary.LittleEndian.PutUint64(b[:], uint64(len(plan[i].Rows)))
		h.Write(b[:])
		for _, r := range plan[i].Rows {
			if r < 0 || r >= n || seen[r] {
				return "", 0, fmt.Errorf("%w: row %d", ErrBadPlan, r)
			}
			seen[r] = true
			binary.LittleEndian.PutUint64(b[:], uint64(r))
			h.Write(b[:])
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:16]), n, nil
}

func runName(i int) string { return fmt.Sprintf("run-%06d.spool", i) }

// recover takes up the spool files of an earlier merge of the same plan.
func (m *Merger) recover() error {
	ents, err := os.ReadDir(m.opt.SpoolDir)
	if err != nil {
		return fmt.Errorf("scoring: spool: %w", err)
	}
	type run struct {
		k    int
		path string
		h    *spoolHeader
	}
	var runs []run
	replaced := map[string]bool{}
	for _, e := range ents {
		name := e.Name()
		var k int
		if _, err := fmt.Sscanf(name, "run-%06d.spool", &k); err != nil || name != runName(k) {
			continue // temporary files of an interrupted spill, or foreign files
		}
		path := filepath.Join(m.opt.SpoolDir, name)
		h, err := readSpoolHeader(path)
		if err != nil {
			return err
		}
		if h.Plan != m.fingerprint {
			return fmt.Errorf("%w (%s)", ErrSpoolMismatch, m.opt.SpoolDir)
		}
		for _, r := range h.Replaces {
			replaced[r] = true
		}
		runs = append(runs, run{k, path, h})
		m.nextRun = max(m.nextRun, k+1)
	}
	for _, r := range runs {
		if replaced[filepath.Base(r.path)] {
			if err := os.Remove(r.path); err != nil {
				return fmt.Errorf("scoring: spool: %w", err)
			}
			continue
		}
		var acc Accumulator
		if err := json.Unmarshal(r.h.Acc, &acc); err != nil {
			return fmt.Errorf("scoring: spool %s: %w", r.path, err)
		}
		for _, id := range r.h.Batches {
			if id < 0 || id >= len(m.accepted) || m.accepted[id] {
				return fmt.Errorf("%w: %s repeats or names batch %d", ErrSpoolMismatch, r.path, id)
			}
			m.accepted[id] = true
			m.nAccepted++
		}
		m.total.Merge(&acc)
		m.duplicates += r.h.Duplicates
		m.runs = append(m.runs, r.path)
	}
	return nil
}

func readSpoolHeader(path string) (*spoolHeader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("scoring: spool: %w", err)
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("scoring: spool %s: %w", path, err)
	}
	var h spoolHeader
	if err := json.Unmarshal(line, &h); err != nil {
		return nil, fmt.Errorf("scoring: spool %s: %w", path, err)
	}
	return &h, nil
}

// Accept takes the result of batch id: one prediction per row of the batch.
// It reports whether the result was accepted; a batch already accepted is
// dropped and counted as a duplicate (false, nil). A result that names an
// unknown batch, misses or repeats a row or holds a row of another batch is
// refused with an error and not accepted, so a correct copy can still be; so
// is a result with a failed row when scoring.on_row_error is fail.
// Predictions are resolved (Prediction.Resolve) in place.
func (m *Merger) Accept(id int, preds []Prediction) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.finished {
		return false, ErrFinished
	}
	if id < 0 || id >= len(m.opt.Plan) {
		return false, fmt.Errorf("%w: %d of %d", ErrUnknownBatch, id, len(m.opt.Plan))
	}
	if m.accepted[id] {
		m.duplicates++
		m.bufDups++
		return false, nil
	}
	b := &m.opt.Plan[id]
	if len(preds) != len(b.Rows) {
		return false, fmt.Errorf("%w: batch %d has %d rows, result has %d", ErrBatchMismatch, id, len(b.Rows), len(preds))
	}
	got := make([]int64, len(preds))
	for i := range preds {
		got[i] = preds[i].Index
	}
	slices.Sort(got)
	for i, r := range b.Rows {
		if got[i] != int64(r) {
			return false, fmt.Errorf("%w: batch %d", ErrBatchMismatch, id)
		}
	}
	if m.opt.Spec.OnRowError == "fail" {
		for i := range preds {
			if preds[i].Error != "" {
				return false, fmt.Errorf("%w: row %s: %s", ErrRowFailed, rowName(&preds[i]), preds[i].Error)
			}
		}
	}
	lines := make([]spoolRow, len(preds))
	for i := range preds {
		preds[i].Resolve()
		line, err := MarshalRow(m.opt.Spec.Task, &preds[i])
		if err != nil {
			return false, fmt.Errorf("scoring: row %s: %w", rowName(&preds[i]), err)
		}
		lines[i] = spoolRow{preds[i].Index, line}
	}
	part := NewAccumulator(m.opt.Spec.Task, m.opt.Spec.Metrics)
	part.AddBatch(preds)
	m.total.Merge(part)
	m.bufAcc.Merge(part)
	m.buf = append(m.buf, lines...)
	m.bufBatches = append(m.bufBatches, id)
	m.accepted[id] = true
	m.nAccepted++
	if len(m.buf) >= m.opt.MemRows {
		if err := m.spill(); err != nil {
			return true, err
		}
	}
	return true, nil
}

func rowName(p *Prediction) string {
	if p.ID != "" {
		return strconv.Quote(p.ID)
	}
	return strconv.FormatInt(p.Index, 10)
}

// Flush spills the accepted rows held in memory to a spool file, so that an
// interrupted merge taken up again (NewMerger on the same SpoolDir) counts
// their batches as accepted. Batches accepted after the last Flush or spill
// are lost with the process and must be scored again.
func (m *Merger) Flush() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.finished {
		return ErrFinished
	}
	return m.spill()
}

// spill writes buf, sorted by row index, to the next spool file, atomically.
func (m *Merger) spill() error {
	if len(m.buf) == 0 && m.bufDups == 0 {
		return nil
	}
	slices.SortFunc(m.buf, func(a, b spoolRow) int { return cmpInt64(a.index, b.index) })
	acc, err := json.Marshal(m.bufAcc)
	if err != nil {
		return err
	}
	hdr, err := json.Marshal(spoolHeader{Plan: m.fingerprint, Batches: m.bufBatches, Rows: len(m.buf), Duplicates: m.bufDups, Acc: acc})
	if err != nil {
		return err
	}
	path := filepath.Join(m.opt.SpoolDir, runName(m.nextRun))
	err = fsutil.Write(path, func(w io.Writer) error {
		if _, err := w.Write(append(hdr, '\n')); err != nil {
			return err
		}
		var num []byte
		for _, r := range m.buf {
			num = strconv.AppendInt(num[:0], r.index, 10)
			num = append(num, '\t')
			if _, err := w.Write(num); err != nil {
				return err
			}
			if _, err := w.Write(r.line); err != nil {
				return err
			}
			if _, err := w.Write([]byte{'\n'}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("scoring: spill: %w", err)
	}
	m.runs = append(m.runs, path)
	m.nextRun++
	m.buf = m.buf[:0]
	m.bufBatches = nil
	m.bufDups = 0
	m.bufAcc = NewAccumulator(m.opt.Spec.Task, m.opt.Spec.Metrics)
	return nil
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Accepted reports whether batch id has been accepted.
func (m *Merger) Accepted(id int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return id >= 0 && id < len(m.accepted) && m.accepted[id]
}

// Pending lists the batches not accepted yet, ascending.
func (m *Merger) Pending() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	var p []int
	for id, ok := range m.accepted {
		if !ok {
			p = append(p, id)
		}
	}
	return p
}

// Result is the metrics and counts over the batches accepted so far.
func (m *Merger) Result() Result {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.result()
}

func (m *Merger) result() Result {
	r := m.total.Result()
	r.Counts.Batches = int64(m.nAccepted)
	r.Counts.DuplicatesDropped = m.duplicates
	return r
}

// Finish writes Dir/predictions.jsonl (every row in input order) and
// Dir/metrics.json, each atomically, once every batch has been accepted, and
// removes the spool. It fails with ErrIncomplete while batches are missing.
func (m *Merger) Finish() (Result, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.finished {
		return Result{}, ErrFinished
	}
	if missing := len(m.accepted) - m.nAccepted; missing > 0 {
		return Result{}, fmt.Errorf("%w: %d of %d batches", ErrIncomplete, missing, len(m.accepted))
	}
	if err := os.MkdirAll(m.opt.Dir, 0o755); err != nil {
		return Result{}, fmt.Errorf("scoring: %w", err)
	}
	// Bound the files open at once: fold the oldest runs together first.
	for len(m.runs) > mergeFanIn {
		if err := m.compact(); err != nil {
			return Result{}, err
		}
	}
	slices.SortFunc(m.buf, func(a, b spoolRow) int { return cmpInt64(a.index, b.index) })
	err := fsutil.Write(filepath.Join(m.opt.Dir, PredictionsFile), func(w io.Writer) error {
		next := int64(0)
		return m.mergeRuns(m.runs, m.buf, func(idx int64, line []byte) error {
			if idx != next {
				return fmt.Errorf("scoring: merge found row %d where row %d belongs", idx, next)
			}
			next++
			if _, err := w.Write(line); err != nil {
				return err
			}
			_, err := w.Write([]byte{'\n'})
			return err
		})
	})
	if err != nil {
		return Result{}, err
	}
	res := m.result()
	if err := fsutil.WriteFile(filepath.Join(m.opt.Dir, MetricsFile), m.metricsJSON(res)); err != nil {
		return Result{}, err
	}
	m.finished = true
	m.buf = nil
	if err := os.RemoveAll(m.opt.SpoolDir); err != nil {
		return res, fmt.Errorf("scoring: remove spool: %w", err)
	}
	return res, nil
}

// compact merges the oldest mergeFanIn spool files into one.
func (m *Merger) compact() error {
	group := m.runs[:mergeFanIn]
	var batches []int
	var names []string
	var rows int
	var dups int64
	acc := NewAccumulator(m.opt.Spec.Task, m.opt.Spec.Metrics)
	for _, p := range group {
		h, err := readSpoolHeader(p)
		if err != nil {
			return err
		}
		var a Accumulator
		if err := json.Unmarshal(h.Acc, &a); err != nil {
			return fmt.Errorf("scoring: spool %s: %w", p, err)
		}
		acc.Merge(&a)
		batches = append(batches, h.Batches...)
		names = append(names, filepath.Base(p))
		rows += h.Rows
		dups += h.Duplicates
	}
	accJSON, err := json.Marshal(acc)
	if err != nil {
		return err
	}
	hdr, err := json.Marshal(spoolHeader{Plan: m.fingerprint, Batches: batches, Rows: rows, Duplicates: dups, Acc: accJSON, Replaces: names})
	if err != nil {
		return err
	}
	path := filepath.Join(m.opt.SpoolDir, runName(m.nextRun))
	err = fsutil.Write(path, func(w io.Writer) error {
		if _, err := w.Write(append(hdr, '\n')); err != nil {
			return err
		}
		var num []byte
		return m.mergeRuns(group, nil, func(idx int64, line []byte) error {
			num = strconv.AppendInt(num[:0], idx, 10)
			num = append(num, '\t')
			num = append(num, line...)
			num = append(num, '\n')
			_, err := w.Write(num)
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("scoring: compact spool: %w", err)
	}
	// The merged file holds the group's batches and names the originals, so
	// a recovery after a crash here ignores them.
	for _, p := range group {
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("scoring: compact spool: %w", err)
		}
	}
	m.runs = append([]string{path}, m.runs[mergeFanIn:]...)
	m.nextRun++
	return nil
}

// runCursor reads one sorted spool file.
type runCursor struct {
	r    *bufio.Reader
	f    *os.File
	path string
	idx  int64
	line []byte
}

func (c *runCursor) advance() (bool, error) {
	b, err := c.r.ReadBytes('\n')
	if err == io.EOF && len(b) == 0 {
		return false, nil
	}
	if err != nil && err != io.EOF {
		return false, fmt.Errorf("scoring: spool %s: %w", c.path, err)
	}
	b = bytes.TrimSuffix(b, []byte{'\n'})
	tab := bytes.IndexByte(b, '\t')
	if tab < 0 {
		return false, fmt.Errorf("scoring: spool %s: malformed line", c.path)
	}
	idx, err := strconv.ParseInt(string(b[:tab]), 10, 64)
	if err != nil {
		return false, fmt.Errorf("scoring: spool %s: %w", c.path, err)
	}
	c.idx, c.line = idx, b[tab+1:]
	return true, nil
}

type cursorHeap []*runCursor

func (h cursorHeap) Len() int           { return len(h) }
func (h cursorHeap) Less(i, j int) bool { return h[i].idx < h[j].idx }
func (h cursorHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *cursorHeap) Push(x any)        { *h = append(*h, x.(*runCursor)) }
func (h *cursorHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// mergeRuns calls emit for every row of the spool files and of mem (sorted),
// in row order: a k-way merge with a heap.
func (m *Merger) mergeRuns(paths []string, mem []spoolRow, emit func(int64, []byte) error) error {
	var h cursorHeap
	defer func() {
		for _, c := range h {
			c.f.Close()
		}
	}()
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("scoring: spool: %w", err)
		}
		c := &runCursor{r: bufio.NewReaderSize(f, 64<<10), f: f, path: p}
		if _, err := c.r.ReadBytes('\n'); err != nil { // header
			f.Close()
			return fmt.Errorf("scoring: spool %s: %w", p, err)
		}
		ok, err := c.advance()
		if err != nil {
			f.Close()
			return err
		}
		if !ok {
			f.Close()
			continue
		}
		h = append(h, c)
	}
	heap.Init(&h)
	mi := 0
	for len(h) > 0 || mi < len(mem) {
		if len(h) == 0 || (mi < len(mem) && mem[mi].index < h[0].idx) {
			if err := emit(mem[mi].index, mem[mi].line); err != nil {
				return err
			}
			mi++
			continue
		}
		c := h[0]
		if err := emit(c.idx, c.line); err != nil {
			return err
		}
		ok, err := c.advance()
		if err != nil {
			return err
		}
		if ok {
			heap.Fix(&h, 0)
		} else {
			c.f.Close()
			heap.Pop(&h)
		}
	}
	return nil
}

// metricsJSON is metrics.json: the task, the metrics (a non-finite value,
// such as the perplexity of an infinite loss, is written as null), the counts
// and the scoring configuration.
func (m *Merger) metricsJSON(r Result) []byte {
	metrics := make(map[string]any, len(r.Metrics))
	for k, v := range r.Metrics {
		if math.IsInf(v, 0) || math.IsNaN(v) {
			metrics[k] = nil
		} else {
			metrics[k] = v
		}
	}
	doc := struct {
		Task    string         `json:"task"`
		Metrics map[string]any `json:"metrics"`
		Counts  Counts         `json:"counts"`
		Config  Spec           `json:"config"`
	}{m.opt.Spec.Task, metrics, r.Counts, m.opt.Spec}
	b, _ := json.MarshalIndent(doc, "", "  ")
	return append(b, '\n')
}
