package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/herdml/herd/internal/httpserve"
)

// newMeterProvider builds the provider with a Prometheus reader (served on
// c.MetricsAddr, on a registry of its own, not the global one) and an OTLP
// periodic reader when OTLP is on. Without either it still returns an SDK
// provider with no reader, whose instruments are cheap and record nothing.
func newMeterProvider(ctx context.Context, c Config, res *resource.Resource, log *slog.Logger) (*sdkmetric.MeterProvider, *httpserve.Server, []string, error) {
	opts := []sdkmetric.Option{sdkmetric.WithResource(res)}
	var names []string
	var ms *httpserve.Server
	if c.MetricsAddr != "" {
		reg := prometheus.NewRegistry()
		exp, err := otelprom.New(otelprom.WithRegisterer(reg))
		if err != nil {
			return nil, nil, nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slogPromLogger{log}}))
		ms, err = httpserve.Listen(c.MetricsAddr, mux, log, "metrics endpoint")
		if err != nil {
			return nil, nil, nil, fmt.Errorf("telemetry: metrics_addr %s: %w (another process on that port? use port 0 for any free one)", c.MetricsAddr, err)
		}
		opts = append(opts, sdkmetric.WithReader(exp))
		names = append(names, "prometheus")
	}
	if c.OTLPEndpoint != "" || envOTLP("METRICS") {
		exp, err := newOTLPMetricExporter(ctx, c)
		if err != nil {
			if ms != nil {
				_ = ms.Close()
			}
			return nil, nil, nil, err
		}
		// The interval comes from OTEL_METRIC_EXPORT_INTERVAL, default 60s.
		opts = append(opts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
		names = append(names, "otlp")
	}
	return sdkmetric.NewMeterProvider(opts...), ms, names, nil
}

func newOTLPMetricExporter(ctx context.Context, c Config) (sdkmetric.Exporter, error) {
	proto, ep, err := c.otlpTarget("METRICS")
	if err != nil {
		return nil, err
	}
	var exp sdkmetric.Exporter
	switch proto {
	case ProtocolGRPC:
		var opts []otlpmetricgrpc.Option
		if ep.hostport != "" {
			opts = append(opts, otlpmetricgrpc.WithEndpoint(ep.hostport))
			if ep.insecure {
				opts = append(opts, otlpmetricgrpc.WithInsecure())
			}
		}
		exp, err = otlpmetricgrpc.New(ctx, opts...)
	case ProtocolHTTP:
		var opts []otlpmetrichttp.Option
		if ep.hostport != "" {
			opts = append(opts, otlpmetrichttp.WithEndpoint(ep.hostport), otlpmetrichttp.WithURLPath(path.Join("/", ep.basePath, "v1/metrics")))
			if ep.insecure {
				opts = append(opts, otlpmetrichttp.WithInsecure())
			}
		}
		exp, err = otlpmetrichttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP metric exporter (%s): %w", proto, err)
	}
	return exp, nil
}

// slogPromLogger passes promhttp's errors to slog.
type slogPromLogger struct{ log *slog.Logger }

func (l slogPromLogger) Println(v ...any) { l.log.Warn("metrics endpoint", "err", fmt.Sprint(v...)) }
