// Package otlptest is an OTLP receiver for tests: an OpenTelemetry
// collector's trace and metrics services (gRPC, or HTTP with protobuf
// bodies) that keep what they are sent, so that a test can check the spans
// and metrics of processes it started.
package otlptest

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Span is a span as the receiver saw it, with its resource's service.name
// and service.instance.id.
type Span struct {
	TraceID, SpanID, ParentID string
	Name                      string
	Service, Instance         string
	Attrs                     map[string]string
	// Error says the span's status is error (it failed).
	Error bool
}

// Receiver is an OTLP collector for tests: it keeps every span and the last
// value of every gauge or sum it is sent, over gRPC or HTTP (protobuf).
type Receiver struct {
	collectortrace.UnimplementedTraceServiceServer
	collectormetrics.UnimplementedMetricsServiceServer

	mu     sync.Mutex
	spans  []Span
	gauges map[string]float64
	paths  map[string]int // HTTP request paths
}

// New returns an empty receiver; serve it with StartGRPC or StartHTTP.
func New() *Receiver {
	return &Receiver{gauges: map[string]float64{}, paths: map[string]int{}}
}

// StartGRPC serves the receiver on 127.0.0.1 and returns its host:port.
func (r *Receiver) StartGRPC(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, r)
	collectormetrics.RegisterMetricsServiceServer(srv, (*metricsReceiver)(r))
	// Serve returns when Stop (at the test's end) closes the listener.
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

// StartHTTP serves OTLP/HTTP protobuf on any path ending in /v1/traces or
// /v1/metrics and returns the base URL.
func (r *Receiver) StartHTTP(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		r.mu.Lock()
		r.paths[req.URL.Path]++
		r.mu.Unlock()
		var resp proto.Message
		switch {
		case len(req.URL.Path) >= 10 && req.URL.Path[len(req.URL.Path)-10:] == "/v1/traces":
			var m collectortrace.ExportTraceServiceRequest
			if err = proto.Unmarshal(body, &m); err == nil {
				resp, err = r.Export(req.Context(), &m)
			}
		case len(req.URL.Path) >= 11 && req.URL.Path[len(req.URL.Path)-11:] == "/v1/metrics":
			var m collectormetrics.ExportMetricsServiceRequest
			if err = proto.Unmarshal(body, &m); err == nil {
				resp, err = (*metricsReceiver)(r).Export(req.Context(), &m)
			}
		default:
			http.NotFound(w, req)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		out, _ := proto.Marshal(resp)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func anyString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return fmt.Sprint(x.IntValue)
	case *commonpb.AnyValue_DoubleValue:
		return fmt.Sprint(x.DoubleValue)
	case *commonpb.AnyValue_BoolValue:
		return fmt.Sprint(x.BoolValue)
	}
	return v.String()
}

// Export implements the trace service.
func (r *Receiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		res := map[string]string{}
		for _, kv := range rs.GetResource().GetAttributes() {
			res[kv.Key] = anyString(kv.Value)
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				g := Span{
					TraceID:  hex.EncodeToString(s.TraceId),
					SpanID:   hex.EncodeToString(s.SpanId),
					ParentID: hex.EncodeToString(s.ParentSpanId),
					Name:     s.Name,
					Service:  res["service.name"],
					Instance: res["service.instance.id"],
					Attrs:    map[string]string{},
					Error:    s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR,
				}
				for _, kv := range s.Attributes {
					g.Attrs[kv.Key] = anyString(kv.Value)
				}
				r.spans = append(r.spans, g)
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// metricsReceiver gives receiver a second Export method for metrics.
type metricsReceiver Receiver

func (m *metricsReceiver) Export(_ context.Context, req *collectormetrics.ExportMetricsServiceRequest) (*collectormetrics.ExportMetricsServiceResponse, error) {
	r := (*Receiver)(m)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rm := range req.ResourceMetrics {
		for _, sm := range rm.ScopeMetrics {
			for _, met := range sm.Metrics {
				if g := met.GetGauge(); g != nil {
					for _, dp := range g.DataPoints {
						r.gauges[met.Name] = dp.GetAsDouble()
					}
				}
				if s := met.GetSum(); s != nil {
					for _, dp := range s.DataPoints {
						r.gauges[met.Name] = float64(dp.GetAsInt()) + dp.GetAsDouble()
					}
				}
			}
		}
	}
	return &collectormetrics.ExportMetricsServiceResponse{}, nil
}

// Paths counts the OTLP/HTTP requests received by URL path.
func (r *Receiver) Paths() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.paths)
}

// Spans returns the spans received so far.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Metric returns the last value received for the gauge or sum name.
func (r *Receiver) Metric(name string) (float64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.gauges[name]
	return v, ok
}
