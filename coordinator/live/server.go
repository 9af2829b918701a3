package live

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/herdml/herd/internal/httpserve"
)

// Server serves the live view on a TCP address until Close.
type Server struct {
	hs *httpserve.Server
}

// Listen serves the live view of src on addr (HOST:PORT; port 0 picks a
// free one, see URL).
func Listen(addr string, src Source, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hs, err := httpserve.Listen(addr, NewHandler(src, log), log, "live view")
	if err != nil {
		return nil, fmt.Errorf("live view: listen on %s: %w (another process on that port? port 0 picks a free one)", addr, err)
	}
	return &Server{hs: hs}, nil
}

// URL is the page's address; an unspecified listen host (0.0.0.0, ::) is
// shown as 127.0.0.1.
func (s *Server) URL() string {
	a := s.hs.Addr().(*net.TCPAddr)
	host := a.IP.String()
	if a.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, fmt.Sprint(a.Port)) + "/"
}

// Close stops the server: it stops accepting, lets requests in flight end
// for up to 2 s, then closes what is left, and waits for the serving
// goroutine. Call it before closing the Source.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.hs.Shutdown(ctx); err != nil {
		return fmt.Errorf("live view: close: %w", err)
	}
	return nil
}
