// Package httpserve runs an HTTP server on a listener it opens, in a
// goroutine it owns: the live view and the Prometheus endpoint share it.
package httpserve

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Server is a started HTTP server.
type Server struct {
	srv  *http.Server
	addr net.Addr
	done chan struct{}
}

// Listen listens on addr (HOST:PORT; port 0 picks a free one) and serves h
// until Shutdown or Close. The listen error is returned as it is, for the
// caller to name its flag; a later serving error is logged under name.
func Listen(addr string, h http.Handler, log *slog.Logger, name string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{
		srv:  &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second},
		addr: ln.Addr(),
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(name+" stopped", "addr", s.addr.String(), "err", err)
		}
	}()
	return s, nil
}

// Addr is the address it listens on.
func (s *Server) Addr() net.Addr { return s.addr }

// Shutdown stops accepting, lets requests in flight end until ctx ends,
// then closes what is left, and waits for the serving goroutine.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, s.srv.Close())
	}
	<-s.done
	return err
}

// Close closes the server at once and waits for the serving goroutine.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.done
	return err
}
