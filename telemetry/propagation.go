package telemetry

import (
	"context"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// propagator carries the span context across processes as W3C Trace
// Context (traceparent, tracestate) and W3C Baggage headers.
var propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// Propagator is herd's propagator, for libraries that take one.
func Propagator() propagation.TextMapPropagator { return propagator }

// HeaderCarrier adapts a nats.Header to OpenTelemetry's TextMapCarrier.
// Get falls back on a case-insensitive match, since nats.Header keys are
// case-sensitive and other clients may canonicalise them.
type HeaderCarrier nats.Header

var _ propagation.TextMapCarrier = HeaderCarrier(nil)

// Get returns the first value of key.
func (h HeaderCarrier) Get(key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	for k, v := range h {
		if len(v) > 0 && strings.EqualFold(k, key) {
			return v[0]
		}
	}
	return ""
}

// Set replaces the values of key.
func (h HeaderCarrier) Set(key, value string) { h[key] = []string{value} }

// Keys lists the keys present.
func (h HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}

// Inject writes ctx's span context into h, so that the receiver's spans
// join the sender's trace. h must not be nil (use InjectMsg to allocate a
// message's header). A ctx with no span writes nothing.
func Inject(ctx context.Context, h nats.Header) {
	if h == nil {
		return
	}
	propagator.Inject(ctx, HeaderCarrier(h))
}

// InjectMsg is Inject into msg.Header, allocating it when nil.
func InjectMsg(ctx context.Context, msg *nats.Msg) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	if msg.Header == nil {
		msg.Header = nats.Header{}
	}
	Inject(ctx, msg.Header)
}

// Extract returns ctx carrying the remote span context found in h (if any)
// as the parent of the spans started from it.
func Extract(ctx context.Context, h nats.Header) context.Context {
	if len(h) == 0 {
		return ctx
	}
	return propagator.Extract(ctx, HeaderCarrier(h))
}

// TraceParent returns ctx's span context as a W3C traceparent string
// ("00-<trace id>-<span id>-<flags>"), or "" when ctx has none. The
// coordinator stores it with a job in the raft log, so that spans created
// after a leader change still join the job's trace (see WithTraceParent).
func TraceParent(ctx context.Context) string {
	m := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, m)
	return m["traceparent"]
}

// WithTraceParent returns ctx with the remote parent named by a traceparent
// string from TraceParent; an empty or malformed string returns ctx as is.
func WithTraceParent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}
