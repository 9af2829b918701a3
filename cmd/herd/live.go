package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/urfave/cli/v2"

	"github.com/herdml/herd/coordinator"
	"github.com/herdml/herd/coordinator/live"
)

// httpAddrFlag turns on the live view of `coord start` and `train`. It is
// not the Prometheus endpoint (telemetry.metrics_addr).
var httpAddrFlag = &cli.StringFlag{Name: "http-addr", EnvVars: []string{"HERD_HTTP_ADDR"},
	Usage: "serve the live view (a web page of the cluster, its jobs and their loss curves) on HOST:PORT; " +
		"it is read-only and unauthenticated: keep it on a trusted network"}

// startLive serves the live view of srv when --http-addr is set, says
// where on w, and returns the function that stops it (a no-op when off);
// call it before closing srv.
func startLive(c *cli.Context, w io.Writer, srv *coordinator.Server, log *slog.Logger) (stop func(), err error) {
	addr := c.String("http-addr")
	if addr == "" {
		return func() {}, nil
	}
	lv, err := live.Listen(addr, srv, log)
	if err != nil {
		return nil, cli.Exit("--http-addr: "+err.Error(), 1)
	}
	fmt.Fprintf(w, "live view: %s\n", lv.URL())
	return func() {
		if err := lv.Close(); err != nil {
			log.Warn("live view", "err", err)
		}
	}, nil
}
