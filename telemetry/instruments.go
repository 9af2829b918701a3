package telemetry

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Instrument names. Prometheus sees them with dots as underscores and the
// unit as a suffix: herd.train.step.duration (s) is
// herd_train_step_duration_seconds, counters end in _total.
const (
	MetricTrainLoss         = "herd.train.loss"              // gauge: loss of the last step
	MetricTrainLR           = "herd.train.learning_rate"     // gauge
	MetricTrainGradNorm     = "herd.train.grad_norm"         // gauge: before clipping
	MetricTrainTokensPerSec = "herd.train.tokens_per_second" // gauge: global tokens/s of the last step
	MetricTrainSteps        = "herd.train.steps"             // counter
	MetricTrainTokens       = "herd.train.tokens"            // counter: tokens trained on (all workers)
	MetricTrainStepDuration = "herd.train.step.duration"     // histogram, s: whole step
	MetricTrainComputeDur   = "herd.train.compute.duration"  // histogram, s: data+forward+backward+optimizer
	MetricAllReduceDuration = "herd.allreduce.duration"      // histogram, s
	MetricAllReduceBytes    = "herd.allreduce.bytes"         // counter, By: gradient bytes reduced
	MetricAllReduceBusBW    = "herd.allreduce.busbw"         // gauge, By/s: bus bandwidth as nccl-tests defines it
	MetricWorkers           = "herd.workers"                 // gauge: members of the current group epoch
	MetricCheckpointDur     = "herd.checkpoint.duration"     // histogram, s
	MetricCheckpointBytes   = "herd.checkpoint.bytes"        // counter, By
	MetricEvalLoss          = "herd.eval.loss"               // gauge
	MetricScoreRows         = "herd.score.rows"              // counter: rows scored
	MetricScoreRowsPerSec   = "herd.score.rows_per_second"   // gauge
	MetricScoreBatches      = "herd.score.batches"           // counter, attribute outcome=done|retried
	MetricScoreBatchDur     = "herd.score.batch.duration"    // histogram, s
)

// Attribute keys on herd's spans and metrics.
const (
	AttrJob     = attribute.Key("herd.job")     // job id
	AttrRun     = attribute.Key("herd.run")     // the job's run_name
	AttrWorker  = attribute.Key("herd.worker")  // worker id
	AttrRank    = attribute.Key("herd.rank")    // rank in the group epoch
	AttrEpoch   = attribute.Key("herd.epoch")   // group epoch number
	AttrStep    = attribute.Key("herd.step")    // global optimizer step
	AttrBatch   = attribute.Key("herd.batch")   // scoring batch id
	AttrRows    = attribute.Key("herd.rows")    // rows in a batch
	AttrBytes   = attribute.Key("herd.bytes")   // bytes moved (all-reduce, checkpoint)
	AttrWorld   = attribute.Key("herd.world")   // world size
	AttrOutcome = attribute.Key("herd.outcome") // done | retried
	AttrAction  = attribute.Key("herd.action")  // scheduling decision: form | wait | fail
	AttrReason  = attribute.Key("herd.reason")  // why the scheduler decided it
	AttrMicro   = attribute.Key("herd.micro_batches")
)

// durationBuckets (seconds) cover a 1 ms all-reduce to a 10 minute checkpoint.
var durationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// Metrics holds herd's instruments, created once per meter; record through
// Train and Score. Safe for concurrent use.
type Metrics struct {
	loss, lr, gradNorm, tokensPerSec, busBW, evalLoss, scoreRowsPerSec      metric.Float64Gauge
	steps, tokens, allReduceBytes, checkpointBytes, scoreRows, scoreBatches metric.Int64Counter
	stepDur, computeDur, allReduceDur, checkpointDur, scoreBatchDur         metric.Float64Histogram
	workers                                                                 metric.Int64Gauge
}

// NewMetrics creates the instruments on m.
func NewMetrics(m metric.Meter) (*Metrics, error) {
	var (
		x    Metrics
		errs []error
	)
	gauge := func(name, unit, desc string) metric.Float64Gauge {
		g, err := m.Float64Gauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	hist := func(name, desc string) metric.Float64Histogram {
		h, err := m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(durationBuckets...))
		errs = append(errs, err)
		return h
	}
	x.loss = gauge(MetricTrainLoss, "", "Training loss (mean token cross-entropy) of the last step.")
	x.lr = gauge(MetricTrainLR, "", "Learning rate of the last step.")
	x.gradNorm = gauge(MetricTrainGradNorm, "", "Global L2 norm of the LoRA gradient before clipping.")
	x.tokensPerSec = gauge(MetricTrainTokensPerSec, "", "Tokens per second of the last step, all workers together.")
	x.busBW = gauge(MetricAllReduceBusBW, "By/s", "All-reduce bus bandwidth: bytes × 2(n-1)/n per second.")
	x.evalLoss = gauge(MetricEvalLoss, "", "Evaluation loss of the last evaluation.")
	x.scoreRowsPerSec = gauge(MetricScoreRowsPerSec, "", "Scoring throughput in rows per second.")
	x.steps = counter(MetricTrainSteps, "{step}", "Optimizer steps taken.")
	x.tokens = counter(MetricTrainTokens, "{token}", "Tokens trained on, all workers together.")
	x.allReduceBytes = counter(MetricAllReduceBytes, "By", "Gradient bytes all-reduced.")
	x.checkpointBytes = counter(MetricCheckpointBytes, "By", "Checkpoint bytes written.")
	x.scoreRows = counter(MetricScoreRows, "{row}", "Rows scored.")
	x.scoreBatches = counter(MetricScoreBatches, "{batch}", "Scoring batches by outcome (done, retried).")
	x.stepDur = hist(MetricTrainStepDuration, "Wall time of a training step.")
	x.computeDur = hist(MetricTrainComputeDur, "Compute time of a step: data, forward, backward, optimizer.")
	x.allReduceDur = hist(MetricAllReduceDuration, "Wall time of a step's gradient all-reduce.")
	x.checkpointDur = hist(MetricCheckpointDur, "Wall time of writing a checkpoint.")
	x.scoreBatchDur = hist(MetricScoreBatchDur, "Wall time of scoring one batch.")
	w, err := m.Int64Gauge(MetricWorkers, metric.WithUnit("{worker}"), metric.WithDescription("Workers in the current group epoch."))
	errs = append(errs, err)
	x.workers = w
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &x, nil
}

// Train returns the recorder for one training job; attrs are added to every
// measurement (a worker might add AttrWorker).
func (m *Metrics) Train(job string, attrs ...attribute.KeyValue) TrainRecorder {
	if m == nil {
		return TrainRecorder{}
	}
	return TrainRecorder{m: m, opt: metric.WithAttributeSet(attribute.NewSet(append([]attribute.KeyValue{AttrJob.String(job)}, attrs...)...))}
}

// Score returns the recorder for one scoring job.
func (m *Metrics) Score(job string, attrs ...attribute.KeyValue) ScoreRecorder {
	if m == nil {
		return ScoreRecorder{}
	}
	kvs := append([]attribute.KeyValue{AttrJob.String(job)}, attrs...)
	return ScoreRecorder{
		m:       m,
		opt:     metric.WithAttributeSet(attribute.NewSet(kvs...)),
		done:    metric.WithAttributeSet(attribute.NewSet(append(kvs, AttrOutcome.String("done"))...)),
		retried: metric.WithAttributeSet(attribute.NewSet(append(kvs, AttrOutcome.String("retried"))...)),
	}
}

// TrainRecorder records a training job's measurements. A zero
// TrainRecorder records nothing.
type TrainRecorder struct {
	m   *Metrics
	opt metric.MeasurementOption
}

// Step records one optimizer step: Progress and Timing.
func (r TrainRecorder) Step(ctx context.Context, s Step) {
	r.Progress(ctx, s)
	r.Timing(ctx, s)
}

// Progress records the job-wide results of a step: loss, learning rate,
// gradient norm, tokens and tokens/s, and the step count. Every member of
// a group computes the same values, so one of them (rank 0) records them:
// counters summed over workers would count each step world times.
func (r TrainRecorder) Progress(ctx context.Context, s Step) {
	if r.m == nil {
		return
	}
	m, o := r.m, r.opt
	m.loss.Record(ctx, s.Loss, o)
	m.lr.Record(ctx, s.LR, o)
	m.gradNorm.Record(ctx, s.GradNorm, o)
	m.tokensPerSec.Record(ctx, s.TokensPerSec, o)
	m.steps.Add(ctx, 1, o)
	m.tokens.Add(ctx, s.Tokens, o)
}

// Timing records where one worker's step went: step and compute time, and
// the all-reduce's time, bytes and bus bandwidth (skipped when
// AllReduceSeconds is 0, a step without one), and the group size.
func (r TrainRecorder) Timing(ctx context.Context, s Step) {
	if r.m == nil {
		return
	}
	m, o := r.m, r.opt
	m.stepDur.Record(ctx, s.StepSeconds, o)
	m.computeDur.Record(ctx, s.ComputeSeconds, o)
	if s.AllReduceSeconds > 0 {
		m.allReduceDur.Record(ctx, s.AllReduceSeconds, o)
		m.allReduceBytes.Add(ctx, s.AllReduceBytes, o)
		m.busBW.Record(ctx, s.BusBW, o)
	}
	if s.Workers > 0 {
		m.workers.Record(ctx, int64(s.Workers), o)
	}
}

// Workers records the size of a new group epoch.
func (r TrainRecorder) Workers(ctx context.Context, n int) {
	if r.m != nil {
		r.m.workers.Record(ctx, int64(n), r.opt)
	}
}

// Checkpoint records a checkpoint written in seconds, of bytes.
func (r TrainRecorder) Checkpoint(ctx context.Context, seconds float64, bytes int64) {
	if r.m == nil {
		return
	}
	r.m.checkpointDur.Record(ctx, seconds, r.opt)
	r.m.checkpointBytes.Add(ctx, bytes, r.opt)
}

// Eval records an evaluation's loss.
func (r TrainRecorder) Eval(ctx context.Context, e Eval) {
	if r.m != nil {
		r.m.evalLoss.Record(ctx, e.Loss, r.opt)
	}
}

// ScoreRecorder records a scoring job's measurements. A zero ScoreRecorder
// records nothing.
type ScoreRecorder struct {
	m                  *Metrics
	opt, done, retried metric.MeasurementOption
}

// BatchDone records a batch of rows scored in seconds.
func (r ScoreRecorder) BatchDone(ctx context.Context, rows int, seconds float64) {
	if r.m == nil {
		return
	}
	r.m.scoreRows.Add(ctx, int64(rows), r.opt)
	r.m.scoreBatches.Add(ctx, 1, r.done)
	r.m.scoreBatchDur.Record(ctx, seconds, r.opt)
}

// BatchRetried records a batch issued again after its lease was lost.
func (r ScoreRecorder) BatchRetried(ctx context.Context) {
	if r.m != nil {
		r.m.scoreBatches.Add(ctx, 1, r.retried)
	}
}

// RowsPerSec records the job's current throughput.
func (r ScoreRecorder) RowsPerSec(ctx context.Context, v float64) {
	if r.m != nil {
		r.m.scoreRowsPerSec.Record(ctx, v, r.opt)
	}
}
