package collective

import (
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/herdml/herd/internal/natsutil"
)

// NATSTransport is the production Transport over one NATS connection.
// Several members may share a connection (then do not set NoEcho on it).
type NATSTransport struct {
	nc *nats.Conn
}

var _ Transport = (*NATSTransport)(nil)

// NewNATSTransport wraps nc. Closing nc is the caller's job; members using
// a closed connection fail their calls.
func NewNATSTransport(nc *nats.Conn) *NATSTransport { return &NATSTransport{nc: nc} }

// Conn returns the wrapped connection.
func (t *NATSTransport) Conn() *nats.Conn { return t.nc }

// Publish implements Transport. nats.go copies data into its write buffer
// before returning.
func (t *NATSTransport) Publish(subject string, h Header, data []byte) error {
	err := t.nc.PublishMsg(&nats.Msg{Subject: subject, Header: nats.Header(h), Data: data})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, nats.ErrMaxPayload):
		return fmt.Errorf("%w: publish %s: %d bytes (max %d): %v", ErrMaxPayload, subject, len(data)+headerSize(h), t.nc.MaxPayload(), err)
	case errors.Is(err, nats.ErrConnectionClosed):
		return fmt.Errorf("%w: publish %s: %v", ErrTransportClosed, subject, err)
	default:
		return fmt.Errorf("collective: publish %s: %w", subject, err)
	}
}

// Subscribe implements Transport with an asynchronous nats.go subscription
// whose pending limits are lifted (natsutil.Subscribe); the callback blocks
// while ch is full, so messages wait in the client's pending buffer.
func (t *NATSTransport) Subscribe(subject string, ch chan<- *Msg) (Subscription, error) {
	s := &natsSub{done: make(chan struct{})}
	sub, err := natsutil.Subscribe(t.nc, subject, func(m *nats.Msg) {
		msg := &Msg{Subject: m.Subject, Header: Header(m.Header), Data: m.Data}
		select {
		case ch <- msg:
		case <-s.done:
		}
	})
	if err != nil {
		if errors.Is(err, nats.ErrConnectionClosed) {
			return nil, fmt.Errorf("%w: %v", ErrTransportClosed, err)
		}
		return nil, fmt.Errorf("collective: %w", err)
	}
	s.sub = sub
	return s, nil
}

// MaxPayload implements Transport from the server's INFO.
func (t *NATSTransport) MaxPayload() int { return int(t.nc.MaxPayload()) }

type natsSub struct {
	sub  *nats.Subscription
	once sync.Once
	done chan struct{}
}

func (s *natsSub) Unsubscribe() error {
	var err error
	s.once.Do(func() {
		close(s.done)
		err = s.sub.Unsubscribe()
		if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrBadSubscription) {
			err = nil
		}
	})
	return err
}
