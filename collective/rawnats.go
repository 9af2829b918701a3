package collective

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RawNATSTransport is a Transport over one TCP connection to a NATS server
// that speaks the client protocol itself instead of going through nats.go.
// It exists for speed: the relay through the server already costs most of
// the CPU of an all-reduce, and nats.go adds, per received byte, a copy out
// of its 32 KiB read buffer, a freshly allocated (and zeroed) payload, and
// per sent byte a copy into its write buffer. This client reads each
// message's payload straight from the socket into a pooled buffer that the
// member hands back once it has reduced or stored the data, and publishes
// with one writev of the protocol line, header and the caller's slice.
//
// It supports what a collective member needs and no more: plain TCP (no
// TLS), no auth, user/password or token (in the URL or the options), one
// server (the first of a comma-separated list), no reconnects. Use
// NewNATSTransport with a nats.go connection for anything else.
type RawNATSTransport struct {
	conn    net.Conn
	br      *bufio.Reader
	timeout time.Duration

	wmu  sync.Mutex // serializes writes
	line []byte     // protocol line scratch (under wmu)
	hdr  []byte     // header scratch (under wmu)

	mu         sync.Mutex
	subs       map[uint64]*rawSub
	nextSID    uint64
	maxPayload int
	err        error // why the connection ended
	srvErr     error // the server's last -ERR

	closed chan struct{}
	once   sync.Once
	done   chan struct{} // read loop exited
}

var _ Transport = (*RawNATSTransport)(nil)

// RawNATSOptions configures DialRawNATS. Zero values are defaults.
type RawNATSOptions struct {
	// Name is the connection name the server shows.
	Name string
	// User and Password, or Token, authenticate (the URL's user info is
	// used when these are empty).
	User, Password, Token string
	// NoEcho: the server does not deliver this connection's own messages
	// back to it (as nats.NoEcho). Use it with one member per connection.
	NoEcho bool
	// DialTimeout bounds connecting and the protocol handshake. Default 5s.
	DialTimeout time.Duration
	// WriteTimeout bounds one Publish on a stalled connection. Default 30s.
	WriteTimeout time.Duration
}

type rawInfo struct {
	MaxPayload   int  `json:"max_payload"`
	Headers      bool `json:"headers"`
	TLSRequired  bool `json:"tls_required"`
	AuthRequired bool `json:"auth_required"`
	Nonce        string
}

// DialRawNATS connects to the NATS server at rawURL (nats://host:port, or
// host:port) and completes the protocol handshake (CONNECT, PING/PONG), so
// that a failed authentication is reported here.
func DialRawNATS(rawURL string, o RawNATSOptions) (*RawNATSTransport, error) {
	if i := strings.IndexByte(rawURL, ','); i >= 0 {
		rawURL = rawURL[:i]
	}
	rawURL = strings.TrimSpace(rawURL)
	if !strings.Contains(rawURL, "://") {
		rawURL = "nats://" + rawURL
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("collective: raw nats url %q: %w", rawURL, err)
	}
	if u.Scheme != "nats" {
		return nil, fmt.Errorf("%w: raw nats transport: scheme %q is not supported (plain nats:// only; use NewNATSTransport)", ErrInvalid, u.Scheme)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "4222")
	}
	if o.User == "" && o.Password == "" && o.Token == "" && u.User != nil {
		if p, ok := u.User.Password(); ok {
			o.User, o.Password = u.User.Username(), p
		} else {
			o.Token = u.User.Username()
		}
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 30 * time.Second
	}
	conn, err := net.DialTimeout("tcp", host, o.DialTimeout)
	if err != nil {
		return nil, fmt.Errorf("collective: raw nats dial %s: %w", host, err)
	}
	// Socket buffer sizes are left to the kernel: setting SO_RCVBUF turns
	// receive autotuning off and is capped at net.core.rmem_max (about
	// 208 KiB on a stock kernel), far below what a fast link with some
	// latency needs; on loopback here autotuning is as fast as 4 MiB.
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	t := &RawNATSTransport{
		conn:    conn,
		br:      bufio.NewReaderSize(conn, 64<<10),
		timeout: o.WriteTimeout,
		subs:    map[uint64]*rawSub{},
		closed:  make(chan struct{}),
		done:    make(chan struct{}),
	}
	if err := t.handshake(o); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("collective: raw nats connect %s: %w", host, err)
	}
	go t.readLoop()
	return t, nil
}

func (t *RawNATSTransport) handshake(o RawNATSOptions) error {
	_ = t.conn.SetDeadline(time.Now().Add(o.DialTimeout))
	defer func() { _ = t.conn.SetDeadline(time.Time{}) }()
	line, err := t.br.ReadSlice('\n')
	if err != nil {
		return fmt.Errorf("reading INFO: %w", err)
	}
	if !bytes.HasPrefix(line, []byte("INFO ")) {
		return fmt.Errorf("expected INFO, got %q", trimCRLF(line))
	}
	var info rawInfo
	if err := json.Unmarshal(line[5:], &info); err != nil {
		return fmt.Errorf("bad INFO: %w", err)
	}
	if info.TLSRequired {
		return fmt.Errorf("%w: the server requires TLS, which the raw transport does not speak (use NewNATSTransport)", ErrInvalid)
	}
	if !info.Headers {
		return errors.New("the server does not support headers")
	}
	if info.Nonce != "" && o.Token == "" && o.User == "" {
		return fmt.Errorf("%w: the server asks for nkey or JWT authentication, which the raw transport does not do (use NewNATSTransport)", ErrInvalid)
	}
	t.maxPayload = info.MaxPayload
	c := map[string]any{
		"verbose": false, "pedantic": false, "tls_required": false,
		"lang": "go", "version": "herd-collective", "protocol": 1,
		"echo": !o.NoEcho, "headers": true, "no_responders": false,
	}
	if o.Name != "" {
		c["name"] = o.Name
	}
	if o.User != "" || o.Password != "" {
		c["user"], c["pass"] = o.User, o.Password
	}
	if o.Token != "" {
		c["auth_token"] = o.Token
	}
	cj, err := json.Marshal(c)
	if err != nil {
		return err
	}
	msg := append(append([]byte("CONNECT "), cj...), "\r\nPING\r\n"...)
	if _, err := t.conn.Write(msg); err != nil {
		return err
	}
	for {
		line, err := t.br.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("waiting for PONG: %w", err)
		}
		switch {
		case bytes.HasPrefix(line, []byte("PONG")):
			return nil
		case bytes.HasPrefix(line, []byte("-ERR")):
			return fmt.Errorf("server: %s", trimCRLF(line[4:]))
		case bytes.HasPrefix(line, []byte("PING")):
			if _, err := t.conn.Write([]byte("PONG\r\n")); err != nil {
				return err
			}
		}
	}
}

func trimCRLF(b []byte) string { return strings.TrimSpace(string(b)) }

// MaxPayload implements Transport from the server's INFO.
func (t *RawNATSTransport) MaxPayload() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.maxPayload
}

// Close closes the connection and stops every subscription's delivery
// goroutine.
func (t *RawNATSTransport) Close() error {
	t.once.Do(func() {
		close(t.closed)
		_ = t.conn.Close()
	})
	<-t.done
	t.mu.Lock()
	subs := make([]*rawSub, 0, len(t.subs))
	for _, s := range t.subs {
		subs = append(subs, s)
	}
	t.mu.Unlock()
	for _, s := range subs {
		_ = s.Unsubscribe()
	}
	return nil
}

// Err returns why the connection ended (nil while it is up).
func (t *RawNATSTransport) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

var crlf = []byte("\r\n")

// Publish implements Transport: the protocol line, header and data go out
// in one writev; data is in the kernel when Publish returns.
func (t *RawNATSTransport) Publish(subject string, h Header, data []byte) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	select {
	case <-t.closed:
		return fmt.Errorf("%w: publish %s", ErrTransportClosed, subject)
	default:
	}
	hdr := t.hdr[:0]
	if len(h) > 0 {
		hdr = append(hdr, "NATS/1.0\r\n"...)
		for k, vs := range h {
			for _, v := range vs {
				hdr = append(hdr, k...)
				hdr = append(hdr, ": "...)
				hdr = append(hdr, v...)
				hdr = append(hdr, "\r\n"...)
			}
		}
		hdr = append(hdr, "\r\n"...)
	}
	t.hdr = hdr
	total := len(hdr) + len(data)
	if mp := t.MaxPayload(); total > mp {
		return fmt.Errorf("%w: publish %s: %d bytes (max %d)", ErrMaxPayload, subject, total, mp)
	}
	line := t.line[:0]
	if len(hdr) > 0 {
		line = append(line, "HPUB "...)
		line = append(line, subject...)
		line = append(line, ' ')
		line = strconv.AppendInt(line, int64(len(hdr)), 10)
	} else {
		line = append(line, "PUB "...)
		line = append(line, subject...)
	}
	line = append(line, ' ')
	line = strconv.AppendInt(line, int64(total), 10)
	line = append(line, "\r\n"...)
	t.line = line
	bufs := net.Buffers{line, hdr, data, crlf}
	_ = t.conn.SetWriteDeadline(time.Now().Add(t.timeout))
	if _, err := bufs.WriteTo(t.conn); err != nil {
		select {
		case <-t.closed:
			return fmt.Errorf("%w: publish %s: %v", ErrTransportClosed, subject, err)
		default:
		}
		return fmt.Errorf("collective: publish %s: %w", subject, err)
	}
	return nil
}

// writeCtl writes a protocol line (SUB, UNSUB, PONG).
func (t *RawNATSTransport) writeCtl(line string) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	_ = t.conn.SetWriteDeadline(time.Now().Add(t.timeout))
	_, err := io.WriteString(t.conn, line)
	return err
}

// Subscribe implements Transport. Each subscription has a delivery
// goroutine that moves messages from an unbounded queue into ch, so the
// read loop never waits for a slow member (the server would cut the
// connection off as a slow consumer).
func (t *RawNATSTransport) Subscribe(subject string, ch chan<- *Msg) (Subscription, error) {
	t.mu.Lock()
	if t.err != nil {
		err := t.err
		t.mu.Unlock()
		return nil, fmt.Errorf("%w: subscribe %s: %v", ErrTransportClosed, subject, err)
	}
	t.nextSID++
	s := &rawSub{t: t, sid: t.nextSID, ch: ch, wake: make(chan struct{}, 1), done: make(chan struct{}), exited: make(chan struct{})}
	t.subs[s.sid] = s
	t.mu.Unlock()
	go s.deliver()
	if err := t.writeCtl("SUB " + subject + " " + strconv.FormatUint(s.sid, 10) + "\r\n"); err != nil {
		_ = s.Unsubscribe()
		return nil, fmt.Errorf("%w: subscribe %s: %v", ErrTransportClosed, subject, err)
	}
	return s, nil
}

type rawSub struct {
	t        *RawNATSTransport
	sid      uint64
	ch       chan<- *Msg
	mu       sync.Mutex
	queue    []*Msg
	inflight bool // deliver holds messages not yet in ch
	wake     chan struct{}
	once     sync.Once
	done     chan struct{}
	exited   chan struct{}
	// last subject seen, to reuse its string
	lastSubj string
}

// push queues m for delivery. While nothing is queued or being delivered
// it hands m to ch directly when ch has room (saving a goroutine switch).
func (s *rawSub) push(m *Msg) {
	s.mu.Lock()
	if !s.inflight && len(s.queue) == 0 {
		select {
		case s.ch <- m:
			s.mu.Unlock()
			return
		default:
		}
	}
	s.queue = append(s.queue, m)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *rawSub) deliver() {
	defer close(s.exited)
	var batch []*Msg
	for {
		s.mu.Lock()
		if len(s.queue) == 0 {
			s.inflight = false
			s.mu.Unlock()
			select {
			case <-s.wake:
				continue
			case <-s.done:
				return
			}
		}
		batch, s.queue = s.queue, batch[:0]
		s.inflight = true
		s.mu.Unlock()
		for i, m := range batch {
			batch[i] = nil
			select {
			case s.ch <- m:
			case <-s.done:
				return
			}
		}
	}
}

// Unsubscribe implements Subscription.
func (s *rawSub) Unsubscribe() error {
	s.once.Do(func() {
		close(s.done)
		t := s.t
		t.mu.Lock()
		delete(t.subs, s.sid)
		up := t.err == nil
		t.mu.Unlock()
		if up {
			_ = t.writeCtl("UNSUB " + strconv.FormatUint(s.sid, 10) + "\r\n")
		}
		<-s.exited
	})
	return nil
}

func (t *RawNATSTransport) fail(err error) {
	t.mu.Lock()
	if t.err == nil {
		t.err = err
		if t.srvErr != nil {
			t.err = fmt.Errorf("%w (after %w)", err, t.srvErr)
		}
	}
	t.mu.Unlock()
	_ = t.conn.Close()
}

func (t *RawNATSTransport) readLoop() {
	defer close(t.done)
	for {
		if err := t.readOne(); err != nil {
			select {
			case <-t.closed:
				err = ErrTransportClosed
			default:
			}
			t.fail(err)
			return
		}
	}
}

// fields splits a protocol line's arguments (after the verb) in place.
func protoFields(b []byte, out [][]byte) [][]byte {
	out = out[:0]
	for {
		for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
			b = b[1:]
		}
		if len(b) == 0 {
			return out
		}
		i := 0
		for i < len(b) && b[i] != ' ' && b[i] != '\t' {
			i++
		}
		out = append(out, b[:i])
		b = b[i:]
	}
}

func protoAtoi(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

var errRawProto = errors.New("collective: raw nats: protocol error")

func (t *RawNATSTransport) readOne() error {
	line, err := t.br.ReadSlice('\n')
	if err != nil {
		return err
	}
	line = bytes.TrimRight(line, "\r\n")
	var verb []byte
	if i := bytes.IndexByte(line, ' '); i >= 0 {
		verb, line = line[:i], line[i+1:]
	} else {
		verb, line = line, nil
	}
	switch {
	case string(verb) == "HMSG" || string(verb) == "MSG":
		var argv [6][]byte
		args := protoFields(line, argv[:0])
		hdrLen, total := 0, 0
		ok := true
		switch {
		case verb[0] == 'H' && (len(args) == 4 || len(args) == 5):
			hdrLen, ok = protoAtoi(args[len(args)-2])
			if ok {
				total, ok = protoAtoi(args[len(args)-1])
			}
		case verb[0] == 'M' && (len(args) == 3 || len(args) == 4):
			total, ok = protoAtoi(args[len(args)-1])
		default:
			ok = false
		}
		if !ok || hdrLen > total {
			return fmt.Errorf("%w: %q", errRawProto, line)
		}
		sid, ok := protoAtoi(args[1])
		if !ok {
			return fmt.Errorf("%w: %q", errRawProto, line)
		}
		t.mu.Lock()
		s := t.subs[uint64(sid)]
		t.mu.Unlock()
		var subj string
		if s != nil {
			if s.lastSubj == string(args[0]) {
				subj = s.lastSubj
			} else {
				subj = string(args[0])
				s.lastSubj = subj
			}
		}
		buf, pool := getBuf(total + 2)
		if _, err := io.ReadFull(t.br, buf); err != nil {
			return err
		}
		if buf[total] != '\r' || buf[total+1] != '\n' {
			return fmt.Errorf("%w: message not terminated by CRLF", errRawProto)
		}
		if s == nil {
			if pool >= 0 {
				putBuf(buf, pool)
			}
			return nil // unsubscribed
		}
		m := &Msg{Subject: subj, Data: buf[hdrLen:total:total]}
		if hdrLen > 0 {
			m.Header = parseRawHeader(buf[:hdrLen])
		}
		if pool >= 0 {
			m.pooled, m.class = buf, pool
		}
		s.push(m)
	case string(verb) == "PING":
		return t.writeCtl("PONG\r\n")
	case string(verb) == "PONG", string(verb) == "+OK":
	case string(verb) == "-ERR":
		// Most errors are followed by the server closing the connection;
		// the read then fails.
		t.mu.Lock()
		t.srvErr = fmt.Errorf("collective: raw nats: server error %s", line)
		t.mu.Unlock()
	case string(verb) == "INFO":
		var info rawInfo
		if err := json.Unmarshal(line, &info); err == nil && info.MaxPayload > 0 {
			t.mu.Lock()
			t.maxPayload = info.MaxPayload
			t.mu.Unlock()
		}
	default:
		return fmt.Errorf("%w: unexpected %q", errRawProto, verb)
	}
	return nil
}

// parseRawHeader decodes a NATS header block ("NATS/1.0\r\nK: v\r\n...\r\n").
func parseRawHeader(b []byte) Header {
	h := Header{}
	i := bytes.Index(b, crlf)
	if i < 0 {
		return h
	}
	b = b[i+2:]
	for len(b) > 0 {
		j := bytes.Index(b, crlf)
		if j < 0 {
			j = len(b)
		}
		kv := b[:j]
		if j+2 <= len(b) {
			b = b[j+2:]
		} else {
			b = nil
		}
		if len(kv) == 0 {
			break
		}
		c := bytes.IndexByte(kv, ':')
		if c <= 0 {
			continue
		}
		k := string(bytes.TrimSpace(kv[:c]))
		h[k] = append(h[k], string(bytes.TrimSpace(kv[c+1:])))
	}
	return h
}

// Payload buffers, by power-of-two size class from 64 KiB: every chunk of
// a call has the same size, so they are reused call after call instead of
// being allocated, zeroed and collected.
const (
	minPoolShift = 16
	maxPoolShift = 27
)

var bufPools [maxPoolShift - minPoolShift + 1]sync.Pool

func getBuf(n int) ([]byte, int) {
	if n < 1<<minPoolShift || n > 1<<maxPoolShift {
		return make([]byte, n), -1
	}
	c := bits.Len(uint(n-1)) - minPoolShift
	if p, ok := bufPools[c].Get().(*[]byte); ok {
		return (*p)[:n], c
	}
	return make([]byte, n, 1<<(c+minPoolShift)), c
}

func putBuf(b []byte, c int) {
	b = b[:cap(b)]
	bufPools[c].Put(&b)
}
