package live

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Server serves the live view on a TCP address until Close.
type Server struct {
	srv  *http.Server
	addr net.Addr
	done chan struct{}
}

// Listen serves the live view of src on addr (HOST:PORT; port 0 picks a
// free one, see URL).
func Listen(addr string, src Source, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("live view: listen on %s: %w (another process on that port? port 0 picks a free one)", addr, err)
	}
	s := &Server{
		srv:  &http.Server{Handler: NewHandler(src, log), ReadHeaderTimeout: 10 * time.Second},
		addr: ln.Addr(),
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("live view stopped", "addr", s.addr.String(), "err", err)
		}
	}()
	return s, nil
}

// URL is the page's address; an unspecified listen host (0.0.0.0, ::) is
// shown as 127.0.0.1.
func (s *Server) URL() string {
	a := s.addr.(*net.TCPAddr)
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
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, s.srv.Close())
	}
	<-s.done
	if err != nil {
		return fmt.Errorf("live view: close: %w", err)
	}
	return nil
}
