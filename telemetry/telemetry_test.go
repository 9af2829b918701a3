package telemetry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/trace"

	"github.com/herdml/herd/configs"
)

func TestConfigValidate(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "")
	t.Setenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "")
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default: %v", err)
	}
	ok := []Config{
		{OTLPEndpoint: "localhost:4317"},
		{OTLPEndpoint: "https://collector.example:4317", OTLPProtocol: "grpc"},
		{OTLPEndpoint: "http://c:4318/prefix", OTLPProtocol: "http/protobuf"},
		{MetricsAddr: ":0", SampleRatio: 0.5},
	}
	for _, c := range ok {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	bad := Config{SampleRatio: 1.5, OTLPProtocol: "http/json", OTLPEndpoint: "collector", MetricsAddr: "9090"}
	err := bad.Validate()
	for _, want := range []string{"SampleRatio", "OTLPProtocol", "OTLPEndpoint", "MetricsAddr"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(%+v) = %v, want a problem with %s", bad, err, want)
		}
	}
	if _, err := Setup(context.Background(), bad, nil); err == nil {
		t.Error("Setup accepted an invalid config")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
	if err := DefaultConfig().Validate(); err == nil || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_PROTOCOL") {
		t.Errorf("env protocol http/json: %v, want an error naming the variable", err)
	}
}

func TestFromConfig(t *testing.T) {
	d := configs.Default().Telemetry
	d.TraceFile, d.MetricsAddr = "t.jsonl", "127.0.0.1:0"
	c := FromConfig(d, "herd-worker", "w1")
	if c.SampleRatio != d.SampleRatio || c.OTLPProtocol != d.OTLPProtocol || c.TraceFile != "t.jsonl" ||
		c.MetricsAddr != d.MetricsAddr || c.ServiceName != "herd-worker" || c.Instance != "w1" {
		t.Errorf("FromConfig = %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
}

// TestNoExporters: with nothing configured spans cost nothing, are not
// recorded, and a remote parent's context still flows on.
func TestNoExporters(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	ctx := context.Background()
	tel, err := Setup(ctx, DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(ctx)
	parent := remoteParent(t, true)
	_, sp := tel.Start(parent, SpanStep)
	if sp.IsRecording() {
		t.Error("span records with no exporter")
	}
	if sp.SpanContext().TraceID() != trace.SpanContextFromContext(parent).TraceID() {
		t.Error("the remote parent's trace was lost")
	}
	sp.End()
	if tel.MetricsAddr() != nil || tel.MetricsURL() != "" {
		t.Error("metrics endpoint on without MetricsAddr")
	}
	tel.Metrics().Train("j").Step(ctx, Step{Loss: 1})
}

// remoteParent is a context carrying a span context received over NATS.
func remoteParent(t *testing.T, sampled bool) context.Context {
	flags := "00"
	if sampled {
		flags = "01"
	}
	h := nats.Header{}
	h.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-"+flags)
	ctx := Extract(context.Background(), h)
	if !trace.SpanContextFromContext(ctx).IsRemote() {
		t.Fatal("Extract found no span context")
	}
	return ctx
}

func TestFileExporter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "traces", "spans.jsonl")
	ctx := context.Background()
	tel, err := Setup(ctx, Config{Instance: "coord-7", TraceFile: path, SampleRatio: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	jctx, job := tel.Start(ctx, SpanJob, trace.WithAttributes(AttrJob.String("j1"), AttrWorld.Int(3)))
	_, ck := tel.Start(jctx, SpanCheckpoint)
	End(ck, errors.New("disk full"))
	End(job, nil)
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	spans, err := ReadTraceFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(spans) != 2 {
		t.Fatalf("%d spans in the file, want 2", len(spans))
	}
	byName := map[string]FileSpan{}
	for _, s := range spans {
		byName[s.Name] = s
	}
	j, c := byName[SpanJob], byName[SpanCheckpoint]
	if j.ParentSpanID != "" || c.ParentSpanID != j.SpanID || c.TraceID != j.TraceID || len(j.TraceID) != 32 || len(j.SpanID) != 16 {
		t.Errorf("ids: job %+v checkpoint %+v", j, c)
	}
	if j.Attributes[string(AttrJob)] != "j1" || j.Attributes[string(AttrWorld)] != float64(3) {
		t.Errorf("job attributes = %v", j.Attributes)
	}
	if c.Status.Code != "error" || c.Status.Message != "disk full" || len(c.Events) != 1 || c.Events[0].Name != "exception" {
		t.Errorf("checkpoint status %+v events %+v", c.Status, c.Events)
	}
	if j.Resource[AttrServiceInstanceID] != "coord-7" || j.Resource[AttrServiceName] != DefaultServiceName {
		t.Errorf("resource = %v", j.Resource)
	}
	if j.Start <= 0 || j.End < j.Start || c.Start < j.Start || j.Kind != "internal" || j.Scope != ScopeName {
		t.Errorf("times/kind/scope: %+v", j)
	}

	// A line torn by a crash at the end is ignored; one in the middle is not.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"trace_id":"ab`)
	f.Close()
	if got, err := ReadTraceFile(path); err != nil || len(got) != 2 {
		t.Errorf("torn last line: %d spans, %v", len(got), err)
	}
	f, _ = os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("\n{}\n")
	f.Close()
	if _, err := ReadTraceFile(path); err == nil || !strings.Contains(err.Error(), ":3:") {
		t.Errorf("bad middle line: %v, want an error at line 3", err)
	}
}

// TestSampling: ratio 0 drops new traces but keeps spans whose remote
// parent was sampled (ParentBased), so a job is traced whole or not at all.
func TestSampling(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spans.jsonl")
	ctx := context.Background()
	tel, err := Setup(ctx, Config{TraceFile: path, SampleRatio: 0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, root := tel.Start(ctx, SpanJob)
	root.End()
	_, kept := tel.Start(remoteParent(t, true), "kept")
	kept.End()
	_, dropped := tel.Start(remoteParent(t, false), "dropped")
	dropped.End()
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	spans, err := ReadTraceFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(spans) != 1 || spans[0].Name != "kept" || spans[0].ParentSpanID != "00f067aa0ba902b7" {
		t.Fatalf("spans = %+v, want only the child of the sampled remote parent", spans)
	}
}

func TestPrometheus(t *testing.T) {
	ctx := context.Background()
	tel, err := Setup(ctx, Config{Instance: "w3", MetricsAddr: "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := tel.Metrics().Train("job-9", AttrWorker.String("w3"))
	tr.Step(ctx, Step{Step: 1, Loss: 1.25, LR: 2e-4, GradNorm: 0.5, Tokens: 4096, TokensPerSec: 8192,
		StepSeconds: 0.5, ComputeSeconds: 0.4, AllReduceSeconds: 0.1, AllReduceBytes: 1 << 20, BusBW: 1e7, Workers: 2})
	tr.Checkpoint(ctx, 3, 4096)
	tr.Eval(ctx, Eval{Loss: 1.5})
	sr := tel.Metrics().Score("job-10")
	sr.BatchDone(ctx, 32, 0.2)
	sr.BatchRetried(ctx)
	sr.RowsPerSec(ctx, 160)

	url := tel.MetricsURL()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, re := range []string{
		`herd_train_loss\{[^}]*herd_job="job-9"[^}]*\} 1\.25`,
		`herd_train_learning_rate\{[^}]*\} 0\.0002`,
		`herd_train_grad_norm\{[^}]*\} 0\.5`,
		`herd_train_tokens_per_second\{[^}]*\} 8192`,
		`herd_train_tokens_total\{[^}]*\} 4096`,
		`herd_train_steps_total\{[^}]*\} 1`,
		`herd_train_step_duration_seconds_bucket\{[^}]*le="0\.5"[^}]*\} 1`,
		`herd_train_compute_duration_seconds_sum\{[^}]*\} 0\.4`,
		`herd_allreduce_duration_seconds_count\{[^}]*\} 1`,
		`herd_allreduce_bytes_total\{[^}]*\} 1\.048576e\+06`,
		`herd_allreduce_busbw_bytes_per_second\{[^}]*\} 1e\+07`,
		`herd_workers\{[^}]*\} 2`,
		`herd_checkpoint_duration_seconds_sum\{[^}]*\} 3`,
		`herd_checkpoint_bytes_total\{[^}]*\} 4096`,
		`herd_eval_loss\{[^}]*\} 1\.5`,
		`herd_score_rows_total\{[^}]*herd_job="job-10"[^}]*\} 32`,
		`herd_score_batches_total\{[^}]*herd_outcome="retried"[^}]*\} 1`,
		`herd_score_batches_total\{[^}]*herd_outcome="done"[^}]*\} 1`,
		`herd_score_rows_per_second\{[^}]*\} 160`,
		`target_info\{[^}]*service_instance_id="w3"`,
	} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("/metrics has no line matching %s", re)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", text)
	}
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(url); err == nil {
		t.Error("metrics endpoint still serving after Shutdown")
	}
	if err := tel.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

func TestMetricsAddrInUse(t *testing.T) {
	ctx := context.Background()
	a, err := Setup(ctx, Config{MetricsAddr: "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown(ctx)
	_, err = Setup(ctx, Config{MetricsAddr: a.MetricsAddr().String()}, nil)
	if err == nil || !strings.Contains(err.Error(), "metrics_addr") {
		t.Errorf("second endpoint on the same port: %v", err)
	}
}

func TestPropagation(t *testing.T) {
	ctx := baggage.ContextWithoutBaggage(remoteParent(t, true))
	m, _ := baggage.NewMember("herd.job", "j1")
	b, _ := baggage.New(m)
	ctx = baggage.ContextWithBaggage(ctx, b)

	h := nats.Header{}
	Inject(ctx, h)
	if got := h.Get("traceparent"); got != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
		t.Errorf("traceparent = %q", got)
	}
	// Keys canonicalised by another client are still found.
	h2 := nats.Header{"Traceparent": h["traceparent"], "Baggage": h["baggage"]}
	back := Extract(context.Background(), h2)
	if trace.SpanContextFromContext(back).SpanID().String() != "00f067aa0ba902b7" {
		t.Error("Extract missed a canonicalised traceparent")
	}
	if baggage.FromContext(back).Member("herd.job").Value() != "j1" {
		t.Error("baggage lost")
	}

	Inject(ctx, nil) // no panic
	msg := nats.NewMsg("s")
	InjectMsg(context.Background(), msg)
	if len(msg.Header) != 0 {
		t.Errorf("a context with no span wrote headers %v", msg.Header)
	}
	InjectMsg(ctx, msg)
	if msg.Header.Get("traceparent") == "" {
		t.Error("InjectMsg wrote no traceparent")
	}
	if got := Extract(context.Background(), nil); trace.SpanContextFromContext(got).IsValid() {
		t.Error("Extract from no header made a span context")
	}

	tp := TraceParent(ctx)
	if tp != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
		t.Errorf("TraceParent = %q", tp)
	}
	if TraceParent(context.Background()) != "" {
		t.Error("TraceParent of an empty context")
	}
	if sc := trace.SpanContextFromContext(WithTraceParent(context.Background(), tp)); !sc.IsSampled() || sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("WithTraceParent: %v", sc)
	}
	if sc := trace.SpanContextFromContext(WithTraceParent(context.Background(), "junk")); sc.IsValid() {
		t.Error("WithTraceParent accepted junk")
	}
}

func TestNilAndNop(t *testing.T) {
	var tel *Telemetry
	parent := remoteParent(t, true)
	ctx, sp := tel.Start(parent, SpanStep)
	sp.End() // must not end anything real
	if trace.SpanContextFromContext(ctx).TraceID() != trace.SpanContextFromContext(parent).TraceID() {
		t.Error("nil Telemetry lost the parent's trace")
	}
	n := Nop()
	_, sp = n.Start(context.Background(), SpanJob)
	End(sp, errors.New("x"))
	n.Metrics().Train("j").Step(context.Background(), Step{Loss: 1})
	var zero TrainRecorder
	zero.Step(context.Background(), Step{})
	var zs ScoreRecorder
	zs.BatchDone(context.Background(), 1, 1)
	if err := n.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
	if err := n.ForceFlush(context.Background()); err != nil {
		t.Error(err)
	}
}
