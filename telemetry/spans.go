package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

var nopTracer = noop.NewTracerProvider().Tracer(ScopeName)

// Span names. One trace per job: the coordinator starts SpanJob when it
// accepts the job and stores its context with the job (TraceParent); every
// later span of the job, on any process, descends from it through NATS
// headers (Inject, Extract).
//
//	job                                  coordinator
//	├── schedule                         coordinator: a placement decision
//	├── group.epoch                      coordinator: forming group epoch N
//	│   └── step                         each worker, one per optimizer step
//	│       ├── step.data                load and collate the micro-batches
//	│       ├── step.forward
//	│       ├── step.backward
//	│       ├── step.allreduce           the collective's reduction
//	│       └── step.optimizer
//	├── checkpoint                       the worker that writes it
//	└── score.batch                      each worker, one per scoring batch
const (
	SpanJob           = "job"
	SpanSchedule      = "schedule"
	SpanGroupEpoch    = "group.epoch"
	SpanStep          = "step"
	SpanStepData      = "step.data"
	SpanStepForward   = "step.forward"
	SpanStepBackward  = "step.backward"
	SpanStepAllReduce = "step.allreduce"
	SpanStepOptimizer = "step.optimizer"
	SpanCheckpoint    = "checkpoint"
	SpanScoreBatch    = "score.batch"
)

// StepPhases are the child spans of a step, in the order they run.
var StepPhases = []string{SpanStepData, SpanStepForward, SpanStepBackward, SpanStepAllReduce, SpanStepOptimizer}

// End ends span, recording err (when not nil) as the span's error status.
// Use as: defer func() { telemetry.End(span, err) }().
func End(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Start starts a span named name as a child of ctx's span on t's tracer;
// a nil t starts a non-recording span that carries ctx's span context on.
func (t *Telemetry) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if t == nil {
		return nopTracer.Start(ctx, name, opts...)
	}
	return t.tracer.Start(ctx, name, opts...)
}
