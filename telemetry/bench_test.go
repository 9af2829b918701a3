package telemetry

import (
	"context"
	"path/filepath"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// discard is a span exporter that drops everything: it isolates the cost
// of tracing inside the training process from the cost of the network.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// traceStep is what a worker does per training step: a step span with its
// four phase spans, as children of the group epoch span from NATS.
func traceStep(ctx context.Context, tr trace.Tracer, step int) {
	sctx, sp := tr.Start(ctx, SpanStep, trace.WithAttributes(AttrStep.Int(step), AttrRank.Int(0)))
	for _, ph := range StepPhases {
		_, c := tr.Start(sctx, ph)
		c.End()
	}
	sp.End()
}

// BenchmarkStepTracing measures the per-step cost of tracing (one step span
// and its four phase spans). Baseline "no-provider" is what herd runs with
// no exporter configured; "not-sampled" is a job whose trace was not
// sampled (sample_ratio < 1); "sampled" records and batches every span to
// an exporter that drops them; "sampled-file" writes every one of them to a
// trace file (the batcher blocks rather than drop spans when its queue is
// full, so the export cost is counted too).
func BenchmarkStepTracing(b *testing.B) {
	parent := remoteParentB(b)
	run := func(b *testing.B, tr trace.Tracer, ctx context.Context) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			traceStep(ctx, tr, i)
		}
	}
	b.Run("no-provider", func(b *testing.B) {
		run(b, Nop().Tracer(), parent(true))
	})
	b.Run("not-sampled", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(Sampler(0)), sdktrace.WithBatcher(discard{}))
		defer tp.Shutdown(context.Background())
		// A root span, as the coordinator's job span with ratio 0.
		ctx, root := tp.Tracer(ScopeName).Start(context.Background(), SpanJob)
		defer root.End()
		run(b, tp.Tracer(ScopeName), ctx)
	})
	b.Run("sampled", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(Sampler(1)), sdktrace.WithBatcher(discard{}))
		defer tp.Shutdown(context.Background())
		run(b, tp.Tracer(ScopeName), parent(true))
	})
	b.Run("sampled-file", func(b *testing.B) {
		exp, err := NewFileExporter(filepath.Join(b.TempDir(), "spans.jsonl"))
		if err != nil {
			b.Fatal(err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(Sampler(1)), sdktrace.WithBatcher(exp, sdktrace.WithBlocking()))
		defer tp.Shutdown(context.Background())
		run(b, tp.Tracer(ScopeName), parent(true))
	})
}

func remoteParentB(b *testing.B) func(sampled bool) context.Context {
	return func(sampled bool) context.Context {
		flags := "00"
		if sampled {
			flags = "01"
		}
		return WithTraceParent(context.Background(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-"+flags)
	}
}
