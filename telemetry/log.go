// Package telemetry owns what herd reports about itself: structured logs
// (log/slog, text on a terminal or JSON), OpenTelemetry traces (one trace
// per job, joined across processes through NATS message headers) and
// metrics (Prometheus endpoint, OTLP), the per-run metrics files
// (artifacts/<run>/metrics/*.jsonl and *.csv) and the progress line.
// Setup builds one process's providers from a Config; the result is passed
// down, never installed as a global. docs/observability.md is the guide.
package telemetry

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// NewLogger returns a logger writing to w in format "text" or "json" at
// level "debug", "info", "warn" or "error".
func NewLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}
