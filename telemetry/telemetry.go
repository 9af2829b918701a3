package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/herdml/herd/internal/httpserve"
	"github.com/herdml/herd/internal/version"
)

// ScopeName is the instrumentation scope of herd's tracer and meter.
const ScopeName = "github.com/herdml/herd"

// Resource attribute keys herd sets (OpenTelemetry semantic conventions).
const (
	AttrServiceName       = "service.name"
	AttrServiceInstanceID = "service.instance.id"
	AttrServiceVersion    = "service.version"
)

// Telemetry is one process's tracer and meter providers with their
// exporters and the Prometheus endpoint. Pass it (or its Tracer and
// Metrics) down; herd sets no OpenTelemetry globals. Safe for concurrent
// use; Shutdown once at exit.
type Telemetry struct {
	tp       trace.TracerProvider
	tracer   trace.Tracer
	mp       metric.MeterProvider
	metrics  *Metrics
	closeTP  func(context.Context) error
	sdkMP    *sdkmetric.MeterProvider
	server   *httpserve.Server
	res      *resource.Resource
	instance string

	shutdownOnce sync.Once
	shutdownErr  error
}

// Setup builds the providers for c and starts the Prometheus endpoint. It
// validates c first and returns every problem. Exporters connect lazily:
// an unreachable collector does not fail Setup, its errors reach
// OpenTelemetry's error handler (see ErrorHandler) while the run goes on.
// log receives what Setup turned on and errors of the metrics endpoint; nil
// discards them.
func Setup(ctx context.Context, c Config, log *slog.Logger) (*Telemetry, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.ServiceName == "" {
		c.ServiceName = DefaultServiceName
	}
	if c.Instance == "" {
		host, _ := os.Hostname()
		c.Instance = host + ":" + strconv.Itoa(os.Getpid())
	}
	res, err := newResource(ctx, c)
	if err != nil {
		return nil, err
	}
	tp, closeTP, traceExp, err := newTracerProvider(ctx, c, res)
	if err != nil {
		return nil, err
	}
	mp, server, metricExp, err := newMeterProvider(ctx, c, res, log)
	if err != nil {
		_ = closeTP(ctx)
		return nil, err
	}
	t := &Telemetry{
		tp:       tp,
		tracer:   tp.Tracer(ScopeName, trace.WithInstrumentationVersion(version.Release)),
		mp:       mp,
		closeTP:  closeTP,
		sdkMP:    mp,
		server:   server,
		res:      res,
		instance: c.Instance,
	}
	if t.metrics, err = NewMetrics(mp.Meter(ScopeName, metric.WithInstrumentationVersion(version.Release))); err != nil {
		_ = t.Shutdown(ctx)
		return nil, err
	}
	attrs := []any{"service", c.ServiceName, "instance", c.Instance, "trace_exporters", traceExp, "metric_exporters", metricExp}
	if len(traceExp) > 0 {
		attrs = append(attrs, "sample_ratio", c.SampleRatio)
	}
	if server != nil {
		attrs = append(attrs, "metrics_url", t.MetricsURL())
	}
	log.Info("telemetry ready", attrs...)
	return t, nil
}

// Nop returns a Telemetry that records and exports nothing, for tests and
// for callers that were given none.
func Nop() *Telemetry {
	tp := tracenoop.NewTracerProvider()
	mp := metricnoop.NewMeterProvider()
	m, _ := NewMetrics(mp.Meter(ScopeName))
	return &Telemetry{
		tp:      tp,
		tracer:  tp.Tracer(ScopeName),
		mp:      mp,
		metrics: m,
		closeTP: func(context.Context) error { return nil },
	}
}

func newResource(ctx context.Context, c Config) (*resource.Resource, error) {
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(
			attribute.String(AttrServiceName, c.ServiceName),
			attribute.String(AttrServiceInstanceID, c.Instance),
			attribute.String(AttrServiceVersion, version.Release),
		),
		// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over the above.
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	return res, nil
}

// Tracer is herd's tracer; start spans named by the Span* constants.
func (t *Telemetry) Tracer() trace.Tracer { return t.tracer }

// TracerProvider is the provider behind Tracer, for libraries that take one.
func (t *Telemetry) TracerProvider() trace.TracerProvider { return t.tp }

// MeterProvider is the provider behind Metrics, for libraries that take one.
func (t *Telemetry) MeterProvider() metric.MeterProvider { return t.mp }

// Metrics are herd's instruments, created once. A nil t has none: its
// recorders (Metrics().Train(...)) record nothing.
func (t *Telemetry) Metrics() *Metrics {
	if t == nil {
		return nil
	}
	return t.metrics
}

// Instance is the service.instance.id of this process's spans and metrics.
func (t *Telemetry) Instance() string { return t.instance }

// MetricsAddr is the address the Prometheus endpoint listens on (with the
// port chosen when Config.MetricsAddr asked for port 0); nil when off.
func (t *Telemetry) MetricsAddr() net.Addr {
	if t.server == nil {
		return nil
	}
	return t.server.Addr()
}

// MetricsURL is the Prometheus endpoint's URL, "" when off.
func (t *Telemetry) MetricsURL() string {
	if t.server == nil {
		return ""
	}
	return "http://" + t.server.Addr().String() + "/metrics"
}

// ForceFlush exports the spans and metrics recorded so far.
func (t *Telemetry) ForceFlush(ctx context.Context) error {
	var errs []error
	if f, ok := t.tp.(interface{ ForceFlush(context.Context) error }); ok {
		errs = append(errs, f.ForceFlush(ctx))
	}
	if t.sdkMP != nil {
		errs = append(errs, t.sdkMP.ForceFlush(ctx))
	}
	return errors.Join(errs...)
}

// Shutdown flushes every exporter, stops the providers and closes the
// Prometheus endpoint, within ctx's deadline. Later calls return the first
// call's result. Spans started after Shutdown are dropped.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	t.shutdownOnce.Do(func() {
		var errs []error
		if err := t.closeTP(ctx); err != nil {
			errs = append(errs, fmt.Errorf("telemetry: traces: %w", err))
		}
		if t.sdkMP != nil {
			if err := t.sdkMP.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("telemetry: metrics: %w", err))
			}
		}
		if t.server != nil {
			if err := t.server.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("telemetry: metrics endpoint: %w", err))
			}
		}
		t.shutdownErr = errors.Join(errs...)
	})
	return t.shutdownErr
}

// ErrorHandler sends OpenTelemetry's internal errors (an unreachable
// collector, a failed export) to log at Warn. The CLI installs it with
// otel.SetErrorHandler; library code does not.
func ErrorHandler(log *slog.Logger) otel.ErrorHandler {
	return otel.ErrorHandlerFunc(func(err error) { log.Warn("telemetry export", "err", err) })
}
