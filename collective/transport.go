package collective

// Header is message metadata, the same shape as nats.Header (and
// convertible to it without copying).
type Header map[string][]string

// Msg is one received message.
type Msg struct {
	Subject string
	Header  Header
	// Data is owned by the receiver but may be shared with other
	// receivers of the same message: treat it as read-only.
	Data []byte

	// pooled is the transport's buffer behind Data, returned to its pool
	// (size class class) by release once the member is done with Data.
	pooled []byte
	class  int
}

// release hands the message's buffer back to the transport's pool (if it
// has one). Data must not be used afterwards.
func (m *Msg) release() {
	if m.pooled != nil {
		b := m.pooled
		m.pooled, m.Data = nil, nil
		putBuf(b, m.class)
	}
}

// Subscription is an active subscription.
type Subscription interface {
	// Unsubscribe stops delivery. A delivery blocked on a full channel is
	// released; at most a message already in flight may still land in the
	// channel afterwards. The channel is never closed by the transport.
	Unsubscribe() error
}

// Transport is the messaging the collective needs: subject-based publish
// with headers and subscriptions that deliver into a bounded channel. NATS
// implements it in production (NewNATSTransport); Hub gives an in-memory one
// for tests.
//
// Requirements on implementations:
//   - Publish may be called concurrently; it must copy data (the caller
//     reuses the slice as soon as Publish returns), and it should not block
//     on slow receivers beyond the transport's own write timeout.
//   - Messages from one publisher to one subscription arrive in publish
//     order. A subscription made before a Publish on the same Transport
//     sees that message if it matches (so that "subscribe, then announce"
//     is safe).
//   - Subjects are dot-separated tokens; subscriptions may use NATS
//     wildcards ("*" one token, ">" the rest).
//   - Delivery blocks while ch is full, queueing in the transport (as the
//     NATS client does in its pending buffer); messages are not dropped for
//     a slow reader. Unsubscribe releases a blocked delivery.
type Transport interface {
	// Publish sends data with header h to subject.
	Publish(subject string, h Header, data []byte) error
	// Subscribe delivers messages on subject (wildcards allowed) to ch.
	Subscribe(subject string, ch chan<- *Msg) (Subscription, error)
	// MaxPayload is the largest header+data size Publish accepts, in
	// bytes.
	MaxPayload() int
}

// headerSize is the encoded size of h in the NATS wire format
// ("NATS/1.0\r\n" + "k: v\r\n"... + "\r\n"); transports use it to enforce
// MaxPayload the way NATS does.
func headerSize(h Header) int {
	if len(h) == 0 {
		return 0
	}
	n := len("NATS/1.0\r\n") + 2
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}
