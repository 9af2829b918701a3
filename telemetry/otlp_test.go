package telemetry

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"

	"github.com/herdml/herd/internal/natsutil"
	"github.com/herdml/herd/internal/otlptest"
)

// The helper process: TestMain runs it instead of the tests when the
// parent test re-executes this binary with helperEnv set.
const (
	helperEnv      = "HERD_TELEMETRY_HELPER"
	helperNATS     = "HERD_TELEMETRY_HELPER_NATS"
	helperOTLP     = "HERD_TELEMETRY_HELPER_OTLP"
	stepSubject    = "herd.test.step."
	readySubject   = "herd.test.ready"
	helperDeadline = 60 * time.Second
)

func TestMain(m *testing.M) {
	if id := os.Getenv(helperEnv); id != "" {
		if err := helperWorker(id); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// helperWorker plays a worker: it takes one step request over NATS, traces
// the step and its phases under the request's span context, answers,
// and flushes its spans to the OTLP receiver on exit.
func helperWorker(id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), helperDeadline)
	defer cancel()
	tel, err := Setup(ctx, Config{ServiceName: "herd-worker", Instance: id, OTLPEndpoint: os.Getenv(helperOTLP), SampleRatio: 1}, nil)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(os.Getenv(helperNATS))
	if err != nil {
		return err
	}
	defer nc.Close()
	got := make(chan error, 1)
	_, err = nc.Subscribe(stepSubject+id, func(msg *nats.Msg) {
		mctx := Extract(context.Background(), msg.Header)
		sctx, step := tel.Start(mctx, SpanStep, trace.WithAttributes(AttrWorker.String(id), AttrStep.Int(1)))
		for _, phase := range StepPhases {
			_, sp := tel.Start(sctx, phase)
			sp.End()
		}
		step.End()
		got <- msg.Respond([]byte(step.SpanContext().TraceID().String()))
	})
	if err != nil {
		return err
	}
	if err := nc.Flush(); err != nil {
		return err
	}
	if err := nc.Publish(readySubject, []byte(id)); err != nil {
		return err
	}
	select {
	case err = <-got:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		return err
	}
	return tel.Shutdown(ctx)
}

// TestTraceAcrossProcesses is the trace test without the cluster:
// a "coordinator" (this process) and two "workers" (this test binary
// re-executed) export to an OTLP/gRPC receiver; the coordinator's group
// epoch span reaches the workers in NATS headers over a real embedded
// nats-server. The receiver must see one trace with the spans of all three
// processes, each with the right parent.
func TestTraceAcrossProcesses(t *testing.T) {
	recv := otlptest.New()
	otlp := recv.StartGRPC(t)
	ns, natsURL, err := natsutil.StartEmbedded(natsutil.EmbeddedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ready, err := nc.SubscribeSync(readySubject)
	if err != nil {
		t.Fatal(err)
	}

	workers := []string{"worker-1", "worker-2"}
	var procs []*exec.Cmd
	for _, id := range workers {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"="+id, helperNATS+"="+natsURL, helperOTLP+"="+otlp)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, cmd)
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
	for range workers {
		if _, err := ready.NextMsg(helperDeadline); err != nil {
			t.Fatalf("a worker did not get ready: %v", err)
		}
	}

	ctx := context.Background()
	tel, err := Setup(ctx, Config{ServiceName: "herd-coord", Instance: "coord-1", OTLPEndpoint: otlp, SampleRatio: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	jctx, job := tel.Start(ctx, SpanJob, trace.WithAttributes(AttrJob.String("job-1")))
	_, sched := tel.Start(jctx, SpanSchedule)
	sched.End()
	ectx, epoch := tel.Start(jctx, SpanGroupEpoch, trace.WithAttributes(AttrEpoch.Int(1), AttrWorld.Int(len(workers))))
	for _, id := range workers {
		msg := nats.NewMsg(stepSubject + id)
		InjectMsg(ectx, msg)
		reply, err := nc.RequestMsg(msg, helperDeadline)
		if err != nil {
			t.Fatalf("step request to %s: %v", id, err)
		}
		if got, want := string(reply.Data), job.SpanContext().TraceID().String(); got != want {
			t.Errorf("%s traced its step in trace %s, want %s", id, got, want)
		}
	}
	epoch.End()
	job.End()
	tel.Metrics().Train("job-1").Step(ctx, Step{Step: 1, Loss: 2.5, LR: 1e-4, Workers: 2})
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for i, cmd := range procs {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("%s: %v", workers[i], err)
		}
	}

	// 3 coordinator spans + a step and its phases per worker.
	want := 3 + len(workers)*(1+len(StepPhases))
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := len(recv.Spans()); n < want {
			return fmt.Errorf("receiver has %d spans, want %d", n, want)
		}
		return nil
	})
	spans := recv.Spans()
	if len(spans) != want {
		t.Fatalf("receiver has %d spans, want %d", len(spans), want)
	}
	byID := map[string]otlptest.Span{}
	instances := map[string]int{}
	traceID := job.SpanContext().TraceID().String()
	for _, s := range spans {
		byID[s.SpanID] = s
		instances[s.Instance]++
		if s.TraceID != traceID {
			t.Errorf("span %s (%s) is in trace %s, want %s", s.Name, s.Instance, s.TraceID, traceID)
		}
	}
	if per := 1 + len(StepPhases); instances["coord-1"] != 3 || instances["worker-1"] != per || instances["worker-2"] != per {
		t.Errorf("spans per instance = %v, want coord-1:3 and %d per worker", instances, per)
	}
	parentName := func(s otlptest.Span) string {
		if s.ParentID == "" {
			return ""
		}
		p, ok := byID[s.ParentID]
		if !ok {
			return "missing " + s.ParentID
		}
		return p.Name
	}
	wantParent := map[string]string{
		SpanJob: "", SpanSchedule: SpanJob, SpanGroupEpoch: SpanJob, SpanStep: SpanGroupEpoch,
	}
	for _, ph := range StepPhases {
		wantParent[ph] = SpanStep
	}
	for _, s := range spans {
		if got := parentName(s); got != wantParent[s.Name] {
			t.Errorf("%s on %s: parent %q, want %q", s.Name, s.Instance, got, wantParent[s.Name])
		}
		if s.Name != SpanStep && s.Name != SpanJob && s.Name != SpanSchedule && s.Name != SpanGroupEpoch {
			// A phase's parent step is on the same worker.
			if p := byID[s.ParentID]; p.Instance != s.Instance {
				t.Errorf("%s on %s has its step on %s", s.Name, s.Instance, p.Instance)
			}
		}
		if s.Name == SpanStep && s.Service != "herd-worker" {
			t.Errorf("step span from service %q", s.Service)
		}
	}
	if v, ok := recv.Metric(MetricTrainLoss); !ok || v != 2.5 {
		t.Errorf("OTLP metric %s = %v (present %v), want 2.5", MetricTrainLoss, v, ok)
	}
	t.Logf("trace %s: %d spans from %v", traceID, len(spans), instances)
}

// TestOTLPHTTP exports over OTLP/HTTP to a base URL with a path.
func TestOTLPHTTP(t *testing.T) {
	recv := otlptest.New()
	base := recv.StartHTTP(t)
	ctx := context.Background()
	tel, err := Setup(ctx, Config{Instance: "h", OTLPEndpoint: base + "/otel", OTLPProtocol: "http", SampleRatio: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, sp := tel.Start(ctx, SpanCheckpoint)
	sp.End()
	tel.Metrics().Train("j").Checkpoint(ctx, 1.5, 1<<20)
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	spans := recv.Spans()
	if len(spans) != 1 || spans[0].Name != SpanCheckpoint || spans[0].Service != DefaultServiceName {
		t.Fatalf("spans = %+v", spans)
	}
	if paths := recv.Paths(); paths["/otel/v1/traces"] != 1 || paths["/otel/v1/metrics"] == 0 {
		t.Errorf("request paths = %v, want /otel/v1/traces and /otel/v1/metrics", paths)
	}
}

// TestOTLPFromEnvironment turns OTLP on with the standard variables only.
func TestOTLPFromEnvironment(t *testing.T) {
	recv := otlptest.New()
	base := recv.StartHTTP(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", base)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_SERVICE_NAME", "from-env")
	ctx := context.Background()
	tel, err := Setup(ctx, DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, sp := tel.Start(ctx, SpanScoreBatch)
	sp.End()
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	spans := recv.Spans()
	if len(spans) != 1 || spans[0].Service != "from-env" || !strings.Contains(spans[0].Instance, ":") {
		t.Fatalf("spans = %+v, want one from service from-env with a host:pid instance", spans)
	}
}

// checkFor polls f until it returns nil or wait passes (nats-server's habit).
func checkFor(t testing.TB, wait, sleep time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(wait)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(sleep)
	}
	t.Fatal(err)
}
