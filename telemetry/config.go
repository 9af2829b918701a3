package telemetry

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/herdml/herd/configs"
)

// OTLP protocols accepted in Config.OTLPProtocol.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http" // OTLP/HTTP with protobuf bodies ("http/protobuf")
)

// DefaultServiceName is the service.name of herd's processes unless
// Config.ServiceName or OTEL_SERVICE_NAME says otherwise.
const DefaultServiceName = "herd"

// Config says where one herd process sends its traces and metrics. The zero
// value turns everything off except what the standard OTEL_* environment
// variables turn on; start from DefaultConfig or FromConfig.
type Config struct {
	// ServiceName is the resource's service.name, e.g. "herd-coord" or
	// "herd-worker". Default DefaultServiceName. OTEL_SERVICE_NAME overrides it.
	ServiceName string
	// Instance is the resource's service.instance.id: the coordinator's raft
	// id or the worker's id. It tells the processes of one trace apart.
	// Default: the host name and process id, "host:pid".
	Instance string

	// OTLPEndpoint receives traces and metrics over OTLP. "host:port" is a
	// plaintext connection (a collector beside the run); "http://host:port"
	// is the same and "https://host:port" uses TLS (system roots, or the
	// file named by OTEL_EXPORTER_OTLP_CERTIFICATE). For OTLP/HTTP a URL's
	// path is a base path: spans go to PATH/v1/traces, metrics to
	// PATH/v1/metrics, as with OTEL_EXPORTER_OTLP_ENDPOINT. Empty: OTLP is
	// on only when OTEL_EXPORTER_OTLP_ENDPOINT (or its _TRACES_/_METRICS_
	// forms) is set, and then the exporters take every setting from the
	// environment. Default empty.
	OTLPEndpoint string
	// OTLPProtocol is "grpc" or "http" ("http/protobuf" is accepted as
	// "http"). Empty means OTEL_EXPORTER_OTLP_PROTOCOL, else grpc.
	OTLPProtocol string

	// SampleRatio is the fraction of new traces (jobs) sampled at the root,
	// in [0, 1]; spans whose parent arrived over NATS follow the parent's
	// decision, so a job's trace is whole or absent. When OTEL_TRACES_SAMPLER
	// is set, it decides instead. DefaultConfig sets 1.
	SampleRatio float64
	// TraceFile, when set, also writes every sampled span as one JSON object
	// per line to this file (appended), for runs without a collector.
	TraceFile string

	// MetricsAddr serves Prometheus metrics at http://MetricsAddr/metrics;
	// host:port, port 0 picks a free one (see Telemetry.MetricsAddr). Empty
	// turns the endpoint off.
	MetricsAddr string
}

// DefaultConfig returns a Config with sampling of every trace and no
// exporter beyond what the OTEL_* environment turns on.
func DefaultConfig() Config {
	return Config{ServiceName: DefaultServiceName, SampleRatio: 1}
}

// FromConfig takes the telemetry section of a run configuration.
func FromConfig(t configs.Telemetry, serviceName, instance string) Config {
	return Config{
		ServiceName:  serviceName,
		Instance:     instance,
		OTLPEndpoint: t.OTLPEndpoint,
		OTLPProtocol: t.OTLPProtocol,
		SampleRatio:  t.SampleRatio,
		TraceFile:    t.TraceFile,
		MetricsAddr:  t.MetricsAddr,
	}
}

// Validate returns every problem with c, joined, each naming its field.
func (c Config) Validate() error {
	var errs []error
	if c.SampleRatio < 0 || c.SampleRatio > 1 || c.SampleRatio != c.SampleRatio {
		errs = append(errs, fmt.Errorf("telemetry: SampleRatio: %v is outside [0, 1]", c.SampleRatio))
	}
	var perr error
	for _, signal := range []string{"TRACES", "METRICS"} {
		if _, err := c.protocol(signal); err != nil && (perr == nil || err.Error() != perr.Error()) {
			perr = err
			errs = append(errs, err)
		}
	}
	if c.OTLPEndpoint != "" {
		if _, err := parseEndpoint(c.OTLPEndpoint); err != nil {
			errs = append(errs, err)
		}
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			errs = append(errs, fmt.Errorf("telemetry: MetricsAddr: want host:port, got %q", c.MetricsAddr))
		}
	}
	return errors.Join(errs...)
}

// protocol resolves the OTLP protocol of a signal ("TRACES" or "METRICS"):
// the config's, else OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL, else
// OTEL_EXPORTER_OTLP_PROTOCOL, else grpc.
func (c Config) protocol(signal string) (string, error) {
	p, field := c.OTLPProtocol, "OTLPProtocol"
	for _, env := range []string{"OTEL_EXPORTER_OTLP_" + signal + "_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p == "" {
			p, field = os.Getenv(env), env
		}
	}
	switch p {
	case "", ProtocolGRPC:
		return ProtocolGRPC, nil
	case ProtocolHTTP, "http/protobuf":
		return ProtocolHTTP, nil
	}
	return "", fmt.Errorf("telemetry: %s: %q is not supported; want grpc or http (http/protobuf)", field, p)
}

// endpoint is a parsed Config.OTLPEndpoint.
type endpoint struct {
	hostport string
	insecure bool
	basePath string // "" or "/prefix" without a trailing slash
}

func parseEndpoint(s string) (endpoint, error) {
	if !strings.Contains(s, "://") {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return endpoint{}, fmt.Errorf("telemetry: OTLPEndpoint: want host:port or http(s)://host:port, got %q", s)
		}
		return endpoint{hostport: s, insecure: true}, nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return endpoint{}, fmt.Errorf("telemetry: OTLPEndpoint: want host:port or http(s)://host:port, got %q", s)
	}
	return endpoint{hostport: u.Host, insecure: u.Scheme == "http", basePath: strings.TrimRight(u.Path, "/")}, nil
}

// envOTLP reports whether the environment turns OTLP export of a signal
// ("TRACES" or "METRICS") on.
func envOTLP(signal string) bool {
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_"+signal+"_ENDPOINT") != ""
}
