package tests

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herdml/herd/internal/otlptest"
	"github.com/herdml/herd/internal/proto"
	"github.com/herdml/herd/telemetry"
)

// TestClusterTrace: `herd coord start` and two `herd worker join`
// processes, pointed at an OTLP receiver in the test by
// OTEL_EXPORTER_OTLP_ENDPOINT alone (as at a collector), train a job. The
// job is one trace with spans from all three processes, every span's
// parent is in it, and every step has its phases as children; the
// processes flush on SIGTERM; metrics arrive over OTLP and on each
// process's --metrics-addr.
func TestClusterTrace(t *testing.T) {
	const (
		steps  = 6 // checkpoint_every 5: a periodic and a final checkpoint
		micro  = 2
		global = 8 // 4 examples per worker: 2 micro-batches each
	)
	recv := otlptest.New()
	endpoint := recv.StartGRPC(t)
	// Inherited by every process the test starts. Short export intervals:
	// the test reads what arrived while the processes run, too.
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+endpoint)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	t.Setenv("OTEL_METRIC_EXPORT_INTERVAL", "500")

	coordMetrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	c := startCluster(t, 1, "--metrics-addr", coordMetrics)
	workerMetrics := map[string]string{}
	var workers []*proc
	for _, id := range []string{"w0", "w1"} {
		workerMetrics[id] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		workers = append(workers, c.workerArgs(id, nil, "--metrics-addr", workerMetrics[id]))
	}
	cfg := writeConfig(t, filepath.Join(t.TempDir(), "out"), steps, micro, global, "")
	_, data := sharedTiny(t)
	job := c.submit(cfg, "cluster.workers=2", "dataset.eval="+filepath.Join(data, "eval.jsonl"), "training.eval_every=3")
	j := c.waitJob(job, 90*time.Second, func(j proto.JobInfo) bool { return j.Status == proto.StatusCompleted })

	// Prometheus, scraped while the processes run.
	scrape := func(addr string) string {
		t.Helper()
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatalf("scrape %s: %v", addr, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if m := scrape(coordMetrics); !strings.Contains(m, `herd_workers{herd_job="`+job+`"`) {
		t.Errorf("coordinator /metrics has no herd_workers for %s:\n%s", job, tail(m, 2000))
	}
	for id, addr := range workerMetrics {
		m := scrape(addr)
		for _, name := range []string{"herd_train_step_duration_seconds_count{", "herd_train_compute_duration_seconds_count{",
			"herd_allreduce_duration_seconds_count{", "herd_allreduce_bytes_total{", "herd_allreduce_busbw_bytes_per_second{"} {
			if !strings.Contains(m, name) {
				t.Errorf("%s /metrics has no %s", id, name)
			}
		}
	}

	// SIGTERM flushes: workers first (they leave through the coordinator).
	stop := func(p *proc) {
		t.Helper()
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if !p.exitedWithin(30 * time.Second) {
			t.Fatalf("%s did not stop within 30s of SIGTERM", p.name)
		}
	}
	for _, w := range workers {
		stop(w)
	}
	stop(c.nodes[0].p)

	spans := recv.Spans()
	byID := map[string]otlptest.Span{}
	traces := map[string]int{}
	perInstance := map[string]int{}
	children := map[string][]otlptest.Span{}
	var roots []otlptest.Span
	for _, s := range spans {
		byID[s.SpanID] = s
		traces[s.TraceID]++
		perInstance[s.Instance]++
		if s.ParentID == "" {
			roots = append(roots, s)
		} else {
			children[s.ParentID] = append(children[s.ParentID], s)
		}
	}
	t.Logf("%d spans in %d trace(s), per process %v", len(spans), len(traces), perInstance)
	if len(traces) != 1 {
		t.Fatalf("spans in %d traces %v, want the job's one", len(traces), traces)
	}
	if len(roots) != 1 || roots[0].Name != telemetry.SpanJob || roots[0].Attrs[string(telemetry.AttrJob)] != job || roots[0].Instance != "c0" {
		t.Fatalf("roots %+v, want one %s span of %s on c0", roots, telemetry.SpanJob, job)
	}
	for _, id := range []string{"c0", "w0", "w1"} {
		if perInstance[id] == 0 {
			t.Errorf("no span from %s", id)
		}
	}
	for _, s := range spans {
		if s.ParentID != "" {
			if _, ok := byID[s.ParentID]; !ok {
				t.Errorf("%s on %s: parent %s is not in the trace", s.Name, s.Instance, s.ParentID)
			}
		}
	}
	count := func(name, instance string) int {
		n := 0
		for _, s := range spans {
			if s.Name == name && (instance == "" || s.Instance == instance) {
				n++
			}
		}
		return n
	}
	// A group re-formed by a starved CPU (not an error) retakes steps.
	exact := j.Restarts == 0
	if !exact {
		t.Logf("job re-formed its group %d time(s): span counts not checked exactly", j.Restarts)
	}
	for _, s := range spans {
		if exact && s.Error {
			t.Errorf("%s on %s failed in a run without failures", s.Name, s.Instance)
		}
	}
	for _, id := range []string{"w0", "w1"} {
		if n := count(telemetry.SpanStep, id); n < j.Step || (exact && n != j.Step) {
			t.Errorf("%s: %d step spans, want %d", id, n, j.Step)
		}
		// Every member evaluates its share after steps 3 and 6.
		if n := count(telemetry.SpanEval, id); n < 2 || (exact && n != 2) {
			t.Errorf("%s: %d %s spans, want 2", id, n, telemetry.SpanEval)
		}
		if count(telemetry.SpanStateSync, id) == 0 {
			t.Errorf("%s: no %s span", id, telemetry.SpanStateSync)
		}
	}
	// The scoring phase after training (dataset.eval is the scoring data)
	// scores every batch once, inside the job's trace.
	if n := count(telemetry.SpanScoreBatch, ""); n < 1 || (exact && n != 1) {
		t.Errorf("%d %s spans, want 1 (5 eval rows, batch size 8)", n, telemetry.SpanScoreBatch)
	}
	maxMicro := 0
	for _, s := range spans {
		switch s.Name {
		case telemetry.SpanStep:
			if s.Error {
				// A step failed by a re-formation stops where it failed.
				continue
			}
			var names []string
			for _, ch := range children[s.SpanID] {
				names = append(names, ch.Name)
				if ch.Instance != s.Instance {
					t.Errorf("step of %s has a %s child from %s", s.Instance, ch.Name, ch.Instance)
				}
			}
			for _, ph := range telemetry.StepPhases {
				if !slices.Contains(names, ph) {
					t.Errorf("step %s on %s: children %v lack %s", s.Attrs[string(telemetry.AttrStep)], s.Instance, names, ph)
				}
			}
			// One forward_backward per micro-batch, as many as step.data
			// cut (the last step of a data epoch has a smaller shard).
			fb, micro := 0, ""
			for _, ch := range children[s.SpanID] {
				switch ch.Name {
				case telemetry.SpanStepForwardBackward:
					fb++
				case telemetry.SpanStepData:
					micro = ch.Attrs[string(telemetry.AttrMicro)]
				}
			}
			if fmt.Sprint(fb) != micro {
				t.Errorf("step on %s: %d %s spans, want one per micro-batch (%s)", s.Instance, fb, telemetry.SpanStepForwardBackward, micro)
			}
			maxMicro = max(maxMicro, fb)
			if p := byID[s.ParentID]; p.Name != telemetry.SpanGroupEpoch || p.Instance != "c0" {
				t.Errorf("step on %s: parent %s on %s, want the coordinator's %s", s.Instance, p.Name, p.Instance, telemetry.SpanGroupEpoch)
			}
		case telemetry.SpanEval:
			if p := byID[s.ParentID]; p.Name != telemetry.SpanStep || p.Instance != s.Instance {
				t.Errorf("%s on %s: parent %s on %s, want its step", s.Name, s.Instance, p.Name, p.Instance)
			}
		case telemetry.SpanCheckpointCommit:
			if p := byID[s.ParentID]; p.Name != telemetry.SpanCheckpoint || p.Instance == "c0" {
				t.Errorf("%s: parent %s on %s, want a worker's %s", s.Name, p.Name, p.Instance, telemetry.SpanCheckpoint)
			}
		}
	}
	if maxMicro != global/2/micro {
		t.Errorf("at most %d micro-batches per step, want %d", maxMicro, global/2/micro)
	}
	if n := count(telemetry.SpanCheckpointCommit, "c0"); n < 2 || (exact && n != 2) {
		t.Errorf("%d %s spans, want 2 (steps 5 and %d)", n, telemetry.SpanCheckpointCommit, steps)
	}
	for _, name := range []string{telemetry.MetricTrainLoss, telemetry.MetricAllReduceBytes, telemetry.MetricWorkers, telemetry.MetricEvalLoss} {
		if _, ok := recv.Metric(name); !ok {
			t.Errorf("no %s over OTLP", name)
		}
	}
}
