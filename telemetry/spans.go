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
//	job                                  coordinator: accepting the job
//	└── schedule                         coordinator: one scheduling decision
//	    └── group.epoch                  coordinator: forming group epoch N
//	        ├── state.sync               each member: joining, agreeing on the state
//	        ├── step                     each member, one per optimizer step
//	        │   ├── step.data            cutting the shard into micro-batches
//	        │   ├── step.forward_backward  one per micro-batch
//	        │   ├── step.allreduce       the collective's reduction
//	        │   ├── step.optimizer
//	        │   ├── eval                 every eval_every steps: the eval set's loss
//	        │   └── checkpoint           rank 0, every checkpoint_every steps
//	        │       └── checkpoint.commit  coordinator: recording it in raft
//	        └── checkpoint               rank 0: the final one, or on pause
//	score.batch                          each worker, one per scoring batch
const (
	SpanJob        = "job"
	SpanSchedule   = "schedule"
	SpanGroupEpoch = "group.epoch"
	SpanStep       = "step"
	SpanStepData   = "step.data"
	// SpanStepForwardBackward is one micro-batch's forward and backward
	// pass: the engine runs them as one call, so they are one span.
	SpanStepForwardBackward = "step.forward_backward"
	SpanStepAllReduce       = "step.allreduce"
	SpanStepOptimizer       = "step.optimizer"
	SpanEval                = "eval"
	SpanStateSync           = "state.sync"
	SpanCheckpoint          = "checkpoint"
	// SpanCheckpointCommit is the coordinator recording a checkpoint.
	SpanCheckpointCommit = "checkpoint.commit"
	SpanScoreBatch       = "score.batch"
)

// StepPhases are the child spans of a step, in the order they run.
var StepPhases = []string{SpanStepData, SpanStepForwardBackward, SpanStepAllReduce, SpanStepOptimizer}

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
