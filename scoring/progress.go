package scoring

import (
	"sort"
	"time"
)

// ProgressEvent kinds.
const (
	// BatchIssued: the batch was leased to Worker. Issuing a batch that was
	// issued before and is not done counts as a retry.
	BatchIssued = iota + 1
	// BatchDone: Worker's result for the batch was accepted.
	BatchDone
	// BatchDuplicate: a result for a batch already done arrived and was dropped.
	BatchDuplicate
	// BatchLost: the lease ended without a result (worker died, lease
	// expired, result refused); the batch waits to be issued again.
	BatchLost
)

// ProgressEvent is one thing that happened to a batch, with the leader's
// clock reading: Progress never reads the clock itself.
type ProgressEvent struct {
	Kind   int
	Batch  int
	Worker string
	At     time.Time
}

// WorkerProgress is one worker's share.
type WorkerProgress struct {
	Rows     int64 `json:"rows"`      // rows of the batches it completed
	Batches  int   `json:"batches"`   // batches it completed
	InFlight int   `json:"in_flight"` // batches leased to it now
	Lost     int   `json:"lost"`      // leases that ended without a result
}

// Progress is the status of a scoring job: what `herd status` shows. Update
// it with the job's events; it is a pure value (no clock, no I/O) and not
// safe for concurrent use.
type Progress struct {
	RowsTotal         int64                      `json:"rows_total"`
	RowsDone          int64                      `json:"rows_done"`
	BatchesTotal      int                        `json:"batches_total"`
	BatchesDone       int                        `json:"batches_done"`
	BatchesInFlight   int                        `json:"batches_in_flight"`
	BatchesRetried    int                        `json:"batches_retried"`
	DuplicatesDropped int                        `json:"duplicates_dropped"`
	Workers           map[string]*WorkerProgress `json:"workers"`
	// Started is when this Progress began counting (the job's start, or its
	// resumption), Updated the time of the last event.
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
	// RowsPerSec is the rows completed since Started per second of
	// Updated - Started; rows already done at a resumption do not count.
	RowsPerSec float64 `json:"rows_per_sec"`
	// ETA is the time left at RowsPerSec; 0 when done or not yet known.
	ETA time.Duration `json:"eta"`

	batchRows   []int
	done        []bool
	issued      []bool
	holders     []map[string]int // per batch: worker → leases in flight
	rowsAtStart int64
}

// NewProgress starts the progress of a job with this plan at start; done
// reports the batches already finished before (a resumed job), or is nil.
func NewProgress(plan []Batch, done func(id int) bool, start time.Time) *Progress {
	p := &Progress{
		BatchesTotal: len(plan),
		Workers:      map[string]*WorkerProgress{},
		Started:      start,
		Updated:      start,
		batchRows:    make([]int, len(plan)),
		done:         make([]bool, len(plan)),
		issued:       make([]bool, len(plan)),
		holders:      make([]map[string]int, len(plan)),
	}
	for i := range plan {
		p.batchRows[i] = len(plan[i].Rows)
		p.RowsTotal += int64(len(plan[i].Rows))
		if done != nil && done(i) {
			p.done[i] = true
			p.BatchesDone++
			p.RowsDone += int64(len(plan[i].Rows))
		}
	}
	p.rowsAtStart = p.RowsDone
	return p
}

func (p *Progress) worker(name string) *WorkerProgress {
	w := p.Workers[name]
	if w == nil {
		w = &WorkerProgress{}
		p.Workers[name] = w
	}
	return w
}

// endLease ends one of worker's leases on batch, if it holds one.
func (p *Progress) endLease(b int, worker string) bool {
	h := p.holders[b]
	if h[worker] == 0 {
		return false
	}
	h[worker]--
	if h[worker] == 0 {
		delete(h, worker)
	}
	p.BatchesInFlight--
	p.worker(worker).InFlight--
	return true
}

// Update applies one event. Events for unknown batches are ignored.
func (p *Progress) Update(e ProgressEvent) {
	b := e.Batch
	if b < 0 || b >= len(p.done) {
		return
	}
	if e.At.After(p.Updated) {
		p.Updated = e.At
	}
	switch e.Kind {
	case BatchIssued:
		if p.done[b] {
			break
		}
		if p.issued[b] {
			p.BatchesRetried++
		}
		p.issued[b] = true
		if p.holders[b] == nil {
			p.holders[b] = map[string]int{}
		}
		p.holders[b][e.Worker]++
		p.BatchesInFlight++
		p.worker(e.Worker).InFlight++
	case BatchDone:
		p.endLease(b, e.Worker)
		if p.done[b] {
			p.DuplicatesDropped++
			break
		}
		p.done[b] = true
		p.BatchesDone++
		p.RowsDone += int64(p.batchRows[b])
		w := p.worker(e.Worker)
		w.Batches++
		w.Rows += int64(p.batchRows[b])
		// Other copies of a finished batch no longer count as in flight.
		for other := range p.holders[b] {
			for p.endLease(b, other) {
			}
		}
	case BatchDuplicate:
		p.endLease(b, e.Worker)
		p.DuplicatesDropped++
	case BatchLost:
		if p.endLease(b, e.Worker) {
			p.worker(e.Worker).Lost++
		}
	}
	p.rate()
}

func (p *Progress) rate() {
	el := p.Updated.Sub(p.Started).Seconds()
	rows := p.RowsDone - p.rowsAtStart
	p.RowsPerSec, p.ETA = 0, 0
	if el <= 0 || rows <= 0 {
		return
	}
	p.RowsPerSec = float64(rows) / el
	if left := p.RowsTotal - p.RowsDone; left > 0 {
		p.ETA = time.Duration(float64(left) / p.RowsPerSec * float64(time.Second))
	}
}

// WorkerNames lists the workers seen, sorted.
func (p *Progress) WorkerNames() []string {
	names := make([]string, 0, len(p.Workers))
	for n := range p.Workers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
