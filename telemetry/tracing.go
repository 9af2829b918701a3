package telemetry

import (
	"context"
	"fmt"
	"os"
	"path"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// newTracerProvider builds the provider for c's span exporters: OTLP when an
// endpoint is configured (by c or the environment), the JSON-lines file
// when c.TraceFile is set. With neither it returns a no-op provider, so an
// unexported span costs next to nothing; spans still carry a parent's
// context from NATS headers on, so other processes' traces stay joined.
// The returned closer flushes and stops the exporters.
func newTracerProvider(ctx context.Context, c Config, res *resource.Resource) (trace.TracerProvider, func(context.Context) error, []string, error) {
	var (
		exporters []sdktrace.SpanExporter
		names     []string
	)
	if c.OTLPEndpoint != "" || envOTLP("TRACES") {
		exp, err := newOTLPTraceExporter(ctx, c)
		if err != nil {
			return nil, nil, nil, err
		}
		exporters = append(exporters, exp)
		names = append(names, "otlp")
	}
	if c.TraceFile != "" {
		exp, err := NewFileExporter(c.TraceFile)
		if err != nil {
			for _, e := range exporters {
				_ = e.Shutdown(ctx)
			}
			return nil, nil, nil, err
		}
		exporters = append(exporters, exp)
		names = append(names, "file")
	}
	if len(exporters) == 0 {
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil, nil
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if os.Getenv("OTEL_TRACES_SAMPLER") == "" {
		opts = append(opts, sdktrace.WithSampler(Sampler(c.SampleRatio)))
	}
	for _, e := range exporters {
		opts = append(opts, sdktrace.WithBatcher(e))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	return tp, tp.Shutdown, names, nil
}

// Sampler is herd's sampler: a new trace (a job) is sampled with probability
// ratio, chosen from its trace id so every process agrees; a span with a
// parent follows the parent's decision.
func Sampler(ratio float64) sdktrace.Sampler {
	return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))
}

func newOTLPTraceExporter(ctx context.Context, c Config) (sdktrace.SpanExporter, error) {
	proto, ep, err := c.otlpTarget("TRACES")
	if err != nil {
		return nil, err
	}
	var exp sdktrace.SpanExporter
	switch proto {
	case ProtocolGRPC:
		var opts []otlptracegrpc.Option
		if ep.hostport != "" {
			opts = append(opts, otlptracegrpc.WithEndpoint(ep.hostport))
			if ep.insecure {
				opts = append(opts, otlptracegrpc.WithInsecure())
			}
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	case ProtocolHTTP:
		var opts []otlptracehttp.Option
		if ep.hostport != "" {
			opts = append(opts, otlptracehttp.WithEndpoint(ep.hostport), otlptracehttp.WithURLPath(path.Join("/", ep.basePath, "v1/traces")))
			if ep.insecure {
				opts = append(opts, otlptracehttp.WithInsecure())
			}
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP trace exporter (%s): %w", proto, err)
	}
	return exp, nil
}

// otlpTarget is the OTLP protocol for signal (TRACES or METRICS) and the
// endpoint from the config; a zero endpoint leaves the exporter to the
// standard OTEL_EXPORTER_OTLP_* variables.
func (c Config) otlpTarget(signal string) (string, endpoint, error) {
	proto, err := c.protocol(signal)
	if err != nil {
		return "", endpoint{}, err
	}
	var ep endpoint
	if c.OTLPEndpoint != "" {
		if ep, err = parseEndpoint(c.OTLPEndpoint); err != nil {
			return "", endpoint{}, err
		}
	}
	return proto, ep, nil
}
