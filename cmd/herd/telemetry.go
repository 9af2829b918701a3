package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/urfave/cli/v2"
	"go.opentelemetry.io/otel"

	"github.com/herdml/herd/telemetry"
)

// telemetryFlags turn on traces and metrics for the long-running commands
// (coord start, worker join). The standard OTEL_* variables work too:
// OTEL_EXPORTER_OTLP_ENDPOINT turns OTLP on when --otlp-endpoint is empty.
var telemetryFlags = []cli.Flag{
	&cli.StringFlag{Name: "otlp-endpoint", EnvVars: []string{"HERD_OTLP_ENDPOINT"},
		Usage: "send traces and metrics over OTLP to HOST:PORT (plaintext) or http(s)://HOST:PORT (default: OTEL_EXPORTER_OTLP_ENDPOINT)"},
	&cli.StringFlag{Name: "otlp-protocol", EnvVars: []string{"HERD_OTLP_PROTOCOL"},
		Usage: "grpc or http (default: OTEL_EXPORTER_OTLP_PROTOCOL, else grpc)"},
	&cli.Float64Flag{Name: "trace-sample-ratio", Value: 1, EnvVars: []string{"HERD_TRACE_SAMPLE_RATIO"},
		Usage: "fraction of jobs traced, in [0, 1] (decided once per job, at submission)"},
	&cli.StringFlag{Name: "trace-file", EnvVars: []string{"HERD_TRACE_FILE"}, Usage: "also append every span to this JSONL file"},
	&cli.StringFlag{Name: "metrics-addr", EnvVars: []string{"HERD_METRICS_ADDR"},
		Usage: "serve Prometheus metrics at http://ADDR/metrics (HOST:PORT; port 0 picks one)"},
}

// shutdownTimeout bounds the final flush of spans and metrics at exit, so
// that an unreachable collector cannot hold a stopping process.
const shutdownTimeout = 10 * time.Second

// setupTelemetry builds the process's telemetry from telemetryFlags and
// points OpenTelemetry's error handler at log. The returned function
// flushes and stops it; call it once, at exit.
func setupTelemetry(c *cli.Context, service, instance string, log *slog.Logger) (*telemetry.Telemetry, func(), error) {
	// Checked here so that the message names the flag, not the field.
	if r := c.Float64("trace-sample-ratio"); !(r >= 0 && r <= 1) {
		return nil, nil, cli.Exit(fmt.Sprintf("--trace-sample-ratio %v: want a fraction in [0, 1]", r), 2)
	}
	cfg := telemetry.Config{
		ServiceName: service, Instance: instance,
		OTLPEndpoint: c.String("otlp-endpoint"), OTLPProtocol: c.String("otlp-protocol"),
		SampleRatio: c.Float64("trace-sample-ratio"), TraceFile: c.String("trace-file"), MetricsAddr: c.String("metrics-addr"),
	}
	return startTelemetry(c.Context, cfg, log)
}

// startTelemetry is setupTelemetry for a telemetry.Config (herd train
// takes it from the run config).
func startTelemetry(ctx context.Context, cfg telemetry.Config, log *slog.Logger) (*telemetry.Telemetry, func(), error) {
	otel.SetErrorHandler(telemetry.ErrorHandler(log))
	tel, err := telemetry.Setup(ctx, cfg, log)
	if err != nil {
		return nil, nil, cli.Exit(err.Error(), 1)
	}
	return tel, func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := tel.Shutdown(ctx); err != nil {
			log.Warn("telemetry shutdown", "err", err)
		}
	}, nil
}
