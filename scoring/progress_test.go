package scoring

import (
	"testing"
	"time"
)

func TestProgress(t *testing.T) {
	plan := Plan([]int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 2, 0) // 5 batches of 2
	t0 := time.Unix(1000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	p := NewProgress(plan, func(id int) bool { return id == 4 }, t0) // resumed: batch 4 done
	if p.RowsTotal != 10 || p.RowsDone != 2 || p.BatchesDone != 1 {
		t.Fatalf("start %+v", p)
	}
	p.Update(ProgressEvent{Kind: BatchIssued, Batch: 0, Worker: "w1", At: at(0)})
	p.Update(ProgressEvent{Kind: BatchIssued, Batch: 1, Worker: "w2", At: at(0)})
	p.Update(ProgressEvent{Kind: BatchIssued, Batch: 2, Worker: "w1", At: at(0)})
	if p.BatchesInFlight != 3 || p.Workers["w1"].InFlight != 2 {
		t.Fatalf("in flight %+v", p)
	}
	p.Update(ProgressEvent{Kind: BatchDone, Batch: 0, Worker: "w1", At: at(2)})
	// 2 rows in 2 s since the resumption: 1 row/s, 6 rows left: ETA 6 s.
	if p.RowsPerSec != 1 || p.ETA != 6*time.Second || p.RowsDone != 4 {
		t.Fatalf("rate %v eta %v done %d", p.RowsPerSec, p.ETA, p.RowsDone)
	}
	// w2 dies; batch 1 is re-issued to w1 (a retry), and w2's late result and
	// w1's both arrive.
	p.Update(ProgressEvent{Kind: BatchLost, Batch: 1, Worker: "w2", At: at(3)})
	p.Update(ProgressEvent{Kind: BatchIssued, Batch: 1, Worker: "w1", At: at(3)})
	p.Update(ProgressEvent{Kind: BatchDone, Batch: 1, Worker: "w1", At: at(4)})
	p.Update(ProgressEvent{Kind: BatchDuplicate, Batch: 1, Worker: "w2", At: at(4)})
	if p.BatchesRetried != 1 || p.DuplicatesDropped != 1 || p.Workers["w2"].Lost != 1 || p.Workers["w2"].InFlight != 0 {
		t.Fatalf("retry %+v w2 %+v", p, p.Workers["w2"])
	}
	// A batch issued twice at once: the first result ends both leases.
	p.Update(ProgressEvent{Kind: BatchIssued, Batch: 3, Worker: "w2", At: at(4)})
	p.Update(ProgressEvent{Kind: BatchIssued, Batch: 3, Worker: "w3", At: at(4)})
	p.Update(ProgressEvent{Kind: BatchDone, Batch: 3, Worker: "w3", At: at(5)})
	p.Update(ProgressEvent{Kind: BatchDone, Batch: 2, Worker: "w1", At: at(6)})
	if p.BatchesDone != 5 || p.RowsDone != 10 || p.BatchesInFlight != 0 || p.ETA != 0 {
		t.Fatalf("end %+v", p)
	}
	if w := p.Workers["w1"]; w.Batches != 3 || w.Rows != 6 || w.InFlight != 0 {
		t.Fatalf("w1 %+v", w)
	}
	if got := p.WorkerNames(); len(got) != 3 || got[0] != "w1" {
		t.Fatalf("workers %v", got)
	}
	p.Update(ProgressEvent{Kind: BatchDone, Batch: 99, At: at(7)}) // ignored
}
