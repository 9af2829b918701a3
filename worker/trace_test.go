package worker_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herdml/herd/coordinator"
	"github.com/herdml/herd/internal/proto"
	"github.com/herdml/herd/internal/testutil"
	"github.com/herdml/herd/telemetry"
	"github.com/herdml/herd/worker"
)

// TestTraceAcrossLeaderChange: the leader stops mid-job and a worker is
// lost; the new leader re-forms the group from the job's trace context in
// the raft state, so the whole run stays one trace: the new epoch's
// group.epoch span (on the new leader) is the parent of the steps after
// it, and every span's parent is in the trace.
func TestTraceAcrossLeaderChange(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	var (
		mu    sync.Mutex
		files = map[string]string{} // instance → trace file
		tels  = map[string]*telemetry.Telemetry{}
	)
	newTel := func(service, instance string) *telemetry.Telemetry {
		path := filepath.Join(dir, instance+".jsonl")
		tel, err := telemetry.Setup(context.Background(), telemetry.Config{ServiceName: service, Instance: instance, TraceFile: path, SampleRatio: 1}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
		mu.Lock()
		files[instance], tels[instance] = path, tel
		mu.Unlock()
		return tel
	}
	// Three coordinators with telemetry instead of newEnv's one.
	e.c = testutil.MakeCluster(t, 3, func(i int, c *coordinator.Config) { c.Telemetry = newTel("herd-coord", c.ID) })
	first := e.c.WaitForLeader(10 * time.Second)

	at := make(chan struct{})
	var once sync.Once
	e.reg.mu.Lock()
	e.reg.hook = func(w string, step int) {
		if w == "a" && step == 3 {
			once.Do(func() { close(at) })
		}
	}
	e.reg.mu.Unlock()
	withTel := func(id string) func(*worker.Config) {
		return func(c *worker.Config) { c.Telemetry = newTel("herd-worker", id) }
	}
	e.startWorker("a", 20*time.Millisecond, withTel("a"))
	stopB := e.startWorker("b", 20*time.Millisecond, withTel("b"))
	e.startWorker("c", 20*time.Millisecond, withTel("c")) // idle until b is lost
	// Long enough to outlast an election and a lost member's detection.
	id := e.submit(strings.Replace(e.yaml(2, ""), fmt.Sprintf("max_steps: %d", totalSteps), "max_steps: 60", 1))
	<-at
	e.c.Stop(first)
	second := e.c.WaitForLeader(10 * time.Second)
	stopB()
	j := e.waitStatus(id, proto.StatusCompleted, 60*time.Second)
	if j.Epoch.Number < 2 {
		t.Fatalf("the group was not re-formed: %+v", j.Epoch)
	}
	for _, tel := range tels {
		if err := tel.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}

	var spans []telemetry.FileSpan
	for _, f := range files {
		s, err := telemetry.ReadTraceFile(f)
		if err != nil {
			t.Fatal(err)
		}
		spans = append(spans, s...)
	}
	byID := map[string]telemetry.FileSpan{}
	traces := map[string]bool{}
	for _, s := range spans {
		byID[s.SpanID] = s
		traces[s.TraceID] = true
	}
	if len(traces) != 1 {
		t.Fatalf("%d spans in %d traces, want one", len(spans), len(traces))
	}
	inst := func(s telemetry.FileSpan) string { return fmt.Sprint(s.Resource[telemetry.AttrServiceInstanceID]) }
	newEpochs := map[string]bool{} // group.epoch spans of the new leader
	for _, s := range spans {
		if s.ParentSpanID == "" {
			if s.Name != telemetry.SpanJob {
				t.Errorf("root span %s on %s, want only %s", s.Name, inst(s), telemetry.SpanJob)
			}
			continue
		}
		if _, ok := byID[s.ParentSpanID]; !ok {
			t.Errorf("%s on %s: parent %s not in the trace", s.Name, inst(s), s.ParentSpanID)
		}
		if s.Name == telemetry.SpanGroupEpoch && inst(s) == fmt.Sprintf("c%d", second) {
			newEpochs[s.SpanID] = true
		}
	}
	stepsUnderNew := 0
	for _, s := range spans {
		if s.Name == telemetry.SpanStep && newEpochs[s.ParentSpanID] {
			stepsUnderNew++
		}
	}
	if len(newEpochs) == 0 || stepsUnderNew == 0 {
		t.Fatalf("new leader c%d: %d group.epoch spans with %d steps under them; want both > 0", second, len(newEpochs), stepsUnderNew)
	}
	t.Logf("%d spans, one trace; leader c%d then c%d formed %d epoch(s) with %d steps", len(spans), first, second, len(newEpochs), stepsUnderNew)
}
