package collective

import (
	"fmt"
	"maps"
	"strings"
	"sync"
)

// Action is what a Hub filter does with one message to one receiver.
type Action int

// Filter actions.
const (
	// Deliver the message once (normal).
	Deliver Action = iota
	// Drop the message for this receiver.
	Drop
	// Duplicate delivers the message twice.
	Duplicate
)

// Filter decides the fate of a message published by endpoint from to a
// subscription of endpoint to. It runs on the publisher's goroutine,
// outside the hub's lock; it must not block and must treat m as read-only.
type Filter func(from, to string, m *Msg) Action

// Hub is an in-memory message bus with NATS subject semantics, for tests.
// Each endpoint (Connect) plays the part of one NATS connection. Partition,
// Heal and SetFilter inject faults; HubTransport.Close plays a killed
// process.
type Hub struct {
	maxPayload int

	mu     sync.Mutex
	subs   map[*hubSub]struct{}
	part   map[string]int // endpoint name → partition; absent = 0
	nextP  int
	filter Filter
}

// NewHub returns a hub whose transports accept messages of up to
// maxPayload bytes (headers included, as NATS counts); 0 means 1 MiB.
func NewHub(maxPayload int) *Hub {
	if maxPayload <= 0 {
		maxPayload = 1 << 20
	}
	return &Hub{maxPayload: maxPayload, subs: map[*hubSub]struct{}{}, part: map[string]int{}}
}

// Connect returns a new endpoint named name (names identify endpoints for
// Partition and Filter; they need not be unique).
func (h *Hub) Connect(name string) *HubTransport {
	return &HubTransport{hub: h, name: name}
}

// Partition cuts the named endpoints off from all others: messages cross
// only between endpoints in the same partition. Each call makes a new
// partition of the names given.
func (h *Hub) Partition(names ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nextP++
	for _, n := range names {
		h.part[n] = h.nextP
	}
}

// Heal removes all partitions.
func (h *Hub) Heal() {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.part)
}

// SetFilter installs f (nil removes it).
func (h *Hub) SetFilter(f Filter) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.filter = f
}

// Close unsubscribes every subscription of every endpoint and stops their
// goroutines.
func (h *Hub) Close() {
	h.mu.Lock()
	subs := make([]*hubSub, 0, len(h.subs))
	for s := range h.subs {
		subs = append(subs, s)
	}
	h.mu.Unlock()
	for _, s := range subs {
		_ = s.Unsubscribe()
	}
}

// HubTransport is one endpoint of a Hub; it implements Transport.
type HubTransport struct {
	hub  *Hub
	name string

	mu     sync.Mutex
	closed bool
	subs   map[*hubSub]struct{}
}

var _ Transport = (*HubTransport)(nil)

// Name returns the endpoint's name.
func (t *HubTransport) Name() string { return t.name }

// MaxPayload implements Transport.
func (t *HubTransport) MaxPayload() int { return t.hub.maxPayload }

// Close ends the endpoint like a killed connection: its subscriptions stop
// and Publish fails with ErrTransportClosed.
func (t *HubTransport) Close() error {
	t.mu.Lock()
	t.closed = true
	subs := make([]*hubSub, 0, len(t.subs))
	for s := range t.subs {
		subs = append(subs, s)
	}
	t.mu.Unlock()
	for _, s := range subs {
		_ = s.Unsubscribe()
	}
	return nil
}

// Publish implements Transport.
func (t *HubTransport) Publish(subject string, hdr Header, data []byte) error {
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	if closed {
		return fmt.Errorf("%w: publish %s", ErrTransportClosed, subject)
	}
	if n := headerSize(hdr) + len(data); n > t.hub.maxPayload {
		return fmt.Errorf("%w: publish %s: %d bytes (max %d)", ErrMaxPayload, subject, n, t.hub.maxPayload)
	}
	if !validSubject(subject, false) {
		return fmt.Errorf("%w: bad subject %q", ErrInvalid, subject)
	}
	tokens := strings.Split(subject, ".")
	// Copy once; receivers share the read-only copy.
	d := append([]byte(nil), data...)
	var h Header
	if hdr != nil {
		h = make(Header, len(hdr))
		for k, v := range hdr {
			h[k] = append([]string(nil), v...)
		}
	}

	hub := t.hub
	hub.mu.Lock()
	filter := hub.filter
	from := hub.part[t.name]
	var targets []*hubSub
	for s := range hub.subs {
		if hub.part[s.t.name] == from && matchSubject(s.pattern, tokens) {
			targets = append(targets, s)
		}
	}
	hub.mu.Unlock()

	for _, s := range targets {
		m := &Msg{Subject: subject, Header: maps.Clone(h), Data: d}
		act := Deliver
		if filter != nil {
			act = filter(t.name, s.t.name, m)
		}
		switch act {
		case Drop:
		case Duplicate:
			s.enqueue(m)
			s.enqueue(&Msg{Subject: subject, Header: maps.Clone(h), Data: d})
		default:
			s.enqueue(m)
		}
	}
	return nil
}

// Subscribe implements Transport. Each subscription has a goroutine that
// moves its unbounded queue into ch; Unsubscribe stops it.
func (t *HubTransport) Subscribe(subject string, ch chan<- *Msg) (Subscription, error) {
	if !validSubject(subject, true) {
		return nil, fmt.Errorf("%w: bad subject %q", ErrInvalid, subject)
	}
	s := &hubSub{
		t:       t,
		pattern: strings.Split(subject, "."),
		ch:      ch,
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		exited:  make(chan struct{}),
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, fmt.Errorf("%w: subscribe %s", ErrTransportClosed, subject)
	}
	if t.subs == nil {
		t.subs = map[*hubSub]struct{}{}
	}
	t.subs[s] = struct{}{}
	t.mu.Unlock()

	t.hub.mu.Lock()
	t.hub.subs[s] = struct{}{}
	t.hub.mu.Unlock()
	go s.pump()
	return s, nil
}

type hubSub struct {
	t       *HubTransport
	pattern []string
	ch      chan<- *Msg

	mu     sync.Mutex
	q      []*Msg
	wake   chan struct{}
	done   chan struct{}
	exited chan struct{}
	once   sync.Once
}

func (s *hubSub) enqueue(m *Msg) {
	s.mu.Lock()
	s.q = append(s.q, m)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *hubSub) pump() {
	defer close(s.exited)
	for {
		s.mu.Lock()
		if len(s.q) == 0 {
			s.mu.Unlock()
			select {
			case <-s.wake:
				continue
			case <-s.done:
				return
			}
		}
		m := s.q[0]
		s.q[0] = nil
		s.q = s.q[1:]
		s.mu.Unlock()
		select {
		case s.ch <- m:
		case <-s.done:
			return
		}
	}
}

// Unsubscribe implements Subscription; it waits for the delivery goroutine
// to stop.
func (s *hubSub) Unsubscribe() error {
	s.once.Do(func() {
		s.t.hub.mu.Lock()
		delete(s.t.hub.subs, s)
		s.t.hub.mu.Unlock()
		s.t.mu.Lock()
		delete(s.t.subs, s)
		s.t.mu.Unlock()
		close(s.done)
		<-s.exited
		s.mu.Lock()
		s.q = nil
		s.mu.Unlock()
	})
	return nil
}

// matchSubject reports whether subject tokens match a NATS pattern.
func matchSubject(pattern, subject []string) bool {
	for i, p := range pattern {
		if p == ">" {
			return len(subject) > i
		}
		if i >= len(subject) {
			return false
		}
		if p != "*" && p != subject[i] {
			return false
		}
	}
	return len(pattern) == len(subject)
}

// validSubject checks NATS subject syntax: non-empty tokens without
// whitespace; wildcards only when allowed and as whole tokens ("*", or ">"
// last).
func validSubject(s string, wildcards bool) bool {
	if s == "" {
		return false
	}
	toks := strings.Split(s, ".")
	for i, tok := range toks {
		if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
			return false
		}
		if tok == "*" || tok == ">" {
			if !wildcards || (tok == ">" && i != len(toks)-1) {
				return false
			}
			continue
		}
		if strings.ContainsAny(tok, "*>") {
			return false
		}
	}
	return true
}
