package telemetry

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// ErrExporterClosed is returned by a FileExporter used after Shutdown.
var ErrExporterClosed = errors.New("telemetry: file exporter is shut down")

// FileSpan is one line of a trace file: a finished span in the shape of an
// OTLP span, flattened for jq and pandas. Ids are lower-case hex; times are
// Unix nanoseconds; attribute values keep their JSON type (string, number,
// bool, or an array of one of those).
type FileSpan struct {
	TraceID      string         `json:"trace_id"`
	SpanID       string         `json:"span_id"`
	ParentSpanID string         `json:"parent_span_id,omitempty"`
	Name         string         `json:"name"`
	Kind         string         `json:"kind"`
	Start        int64          `json:"start_time_unix_nano"`
	End          int64          `json:"end_time_unix_nano"`
	Attributes   map[string]any `json:"attributes,omitempty"`
	Events       []FileEvent    `json:"events,omitempty"`
	Links        []FileLink     `json:"links,omitempty"`
	Status       FileStatus     `json:"status"`
	Resource     map[string]any `json:"resource"`
	Scope        string         `json:"scope,omitempty"`
}

// FileEvent is a span event (an error recorded on the span, for example).
type FileEvent struct {
	Name       string         `json:"name"`
	Time       int64          `json:"time_unix_nano"`
	Attributes map[string]any `json:"attributes,omitempty"`
}

// FileLink points at a span of another trace.
type FileLink struct {
	TraceID string `json:"trace_id"`
	SpanID  string `json:"span_id"`
}

// FileStatus is the span status: code "unset", "ok" or "error".
type FileStatus struct {
	Code    string `json:"code"`
	Message string `json:"message,omitempty"`
}

// FileExporter is a span exporter writing one FileSpan per line, appended
// to a file. Each batch goes out in one write and every line is complete,
// so a process that dies leaves a readable file. Safe for concurrent use.
type FileExporter struct {
	mu   sync.Mutex
	f    *os.File
	path string
}

var _ sdktrace.SpanExporter = (*FileExporter)(nil)

// NewFileExporter opens (creating it and its directory if needed) the file
// at path for appending.
func NewFileExporter(path string) (*FileExporter, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("telemetry: trace file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("telemetry: trace file: %w", err)
	}
	return &FileExporter{f: f, path: path}, nil
}

// ExportSpans writes spans, one line each, in one write.
func (e *FileExporter) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, s := range spans {
		if err := enc.Encode(toFileSpan(s)); err != nil {
			return fmt.Errorf("telemetry: trace file: %w", err)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.f == nil {
		return ErrExporterClosed
	}
	if _, err := e.f.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("telemetry: trace file %s: %w", e.path, err)
	}
	return nil
}

// Shutdown syncs and closes the file. Later exports fail.
func (e *FileExporter) Shutdown(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.f == nil {
		return nil
	}
	err := errors.Join(e.f.Sync(), e.f.Close())
	e.f = nil
	if err != nil {
		return fmt.Errorf("telemetry: trace file %s: %w", e.path, err)
	}
	return nil
}

func toFileSpan(s sdktrace.ReadOnlySpan) FileSpan {
	sc := s.SpanContext()
	fs := FileSpan{
		TraceID:    sc.TraceID().String(),
		SpanID:     sc.SpanID().String(),
		Name:       s.Name(),
		Kind:       s.SpanKind().String(),
		Start:      s.StartTime().UnixNano(),
		End:        s.EndTime().UnixNano(),
		Attributes: attrMap(s.Attributes()),
		Status:     FileStatus{Code: statusCode(s.Status().Code), Message: s.Status().Description},
		Scope:      s.InstrumentationScope().Name,
	}
	if p := s.Parent(); p.IsValid() {
		fs.ParentSpanID = p.SpanID().String()
	}
	if r := s.Resource(); r != nil {
		fs.Resource = attrMap(r.Attributes())
	}
	for _, ev := range s.Events() {
		fs.Events = append(fs.Events, FileEvent{Name: ev.Name, Time: ev.Time.UnixNano(), Attributes: attrMap(ev.Attributes)})
	}
	for _, l := range s.Links() {
		fs.Links = append(fs.Links, FileLink{TraceID: l.SpanContext.TraceID().String(), SpanID: l.SpanContext.SpanID().String()})
	}
	return fs
}

func statusCode(c codes.Code) string {
	switch c {
	case codes.Ok:
		return "ok"
	case codes.Error:
		return "error"
	}
	return "unset"
}

func attrMap(kvs []attribute.KeyValue) map[string]any {
	if len(kvs) == 0 {
		return nil
	}
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

// ReadTraceFile reads the spans of a trace file written by FileExporter. A
// last line cut short (the writer died mid-write) is ignored; any other bad
// line is an error naming its line number.
func ReadTraceFile(path string) ([]FileSpan, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var spans []FileSpan
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	line := 0
	var pending error
	for sc.Scan() {
		line++
		if pending != nil {
			return nil, pending
		}
		var s FileSpan
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			pending = fmt.Errorf("telemetry: %s:%d: %w", path, line, err)
			continue
		}
		spans = append(spans, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("telemetry: %s: %w", path, err)
	}
	return spans, nil
}
