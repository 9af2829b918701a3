package collective

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// MaxGroupSize is the largest group Join accepts.
const MaxGroupSize = 4096

// Op is the reduction.
type Op int

// Reductions.
const (
	// Sum: element-wise sum, accumulated in float32 in rank order 0..N-1.
	Sum Op = iota
	// Mean: Sum divided by N (one float32 division per element).
	Mean
)

func (o Op) String() string {
	switch o {
	case Sum:
		return "sum"
	case Mean:
		return "mean"
	default:
		return fmt.Sprintf("op(%d)", int(o))
	}
}

// Member is one rank of a group in one epoch. AllReduce calls on a member
// must not overlap (ErrBusy); Close may be called from any goroutine.
type Member struct {
	t          Transport
	group      string
	epoch      uint64
	rank, size int
	cfg        Config
	log        *slog.Logger
	id         string
	enc        encoding
	chunkBytes int
	window     int // rsag: chunk rounds a sender may run ahead

	inboxes []string // inbox subject of each rank, this epoch
	bcast   string

	ch   chan *Msg
	subs []Subscription

	closeOnce sync.Once
	closed    chan struct{}
	busy      atomic.Bool

	// Owned by the goroutine holding busy (or Join).
	seq       uint64
	failed    error
	newer     uint64 // newest epoch seen (> epoch means stale)
	stash     []*Msg
	refused   map[refusal]struct{}
	tabs      [2]*chunkTable // rsag, direct
	acc       []float32
	wire      []byte // encode scratch of the receive loop
	sendBuf   []byte // encode scratch of the sender goroutine
	next      []int32
	pend      []*Msg
	agGot     []bool
	roundLeft []int32
}

type refusal struct {
	epoch uint64
	from  int
}

// helloInfo is the payload of hello and ack messages; members compare it
// to detect misconfiguration.
type helloInfo struct {
	ID          string      `json:"id"`
	Size        int         `json:"size"`
	Algorithm   Algorithm   `json:"algorithm"`
	Compression Compression `json:"compression"`
	ChunkBytes  int         `json:"chunk_bytes"`
	Small       int         `json:"small_threshold"`
}

// Join makes the caller rank rank of a group of size members in group at
// epoch, and waits until all size members have joined (a rendezvous: it
// returns when every other member's subscriptions are known to be in
// place). It fails after cfg.Timeout or when ctx ends, with ErrStaleEpoch
// when a newer epoch is seen, ErrMismatch when members disagree on size or
// configuration, and ErrDuplicateRank when another member has the same
// rank. group must be one NATS subject token (no '.', '*', '>',
// whitespace; not "ctl"); epochs only grow.
func Join(ctx context.Context, t Transport, group string, epoch uint64, rank, size int, cfg Config) (*Member, error) {
	var errs []error
	if t == nil {
		errs = append(errs, fmt.Errorf("%w: transport is nil", ErrInvalid))
	}
	if !validGroup(group) {
		errs = append(errs, fmt.Errorf("%w: group %q is not a single subject token", ErrInvalid, group))
	}
	if size < 1 || size > MaxGroupSize {
		errs = append(errs, fmt.Errorf("%w: size %d out of range 1..%d", ErrInvalid, size, MaxGroupSize))
	}
	if rank < 0 || rank >= size {
		errs = append(errs, fmt.Errorf("%w: rank %d out of range 0..%d", ErrInvalid, rank, size-1))
	}
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	room := t.MaxPayload() - HeaderRoom
	if room < 1024 {
		return nil, fmt.Errorf("%w: transport max payload %d leaves no room for data (need > %d)", ErrInvalid, t.MaxPayload(), HeaderRoom+1024)
	}
	chunk, window := cfg.chunkAndWindow(size, room)

	var idb [8]byte
	_, _ = rand.Read(idb[:])
	m := &Member{
		t:          t,
		group:      group,
		epoch:      epoch,
		rank:       rank,
		size:       size,
		cfg:        cfg,
		id:         hex.EncodeToString(idb[:]),
		enc:        cfg.Compression.encoding(),
		chunkBytes: chunk,
		window:     window,
		bcast:      bcastSubject(group, epoch),
		ch:         make(chan *Msg, cfg.QueueLen),
		closed:     make(chan struct{}),
		refused:    map[refusal]struct{}{},
	}
	m.log = cfg.Logger.With("group", group, "epoch", epoch, "rank", rank)
	m.inboxes = make([]string, size)
	for r := range m.inboxes {
		m.inboxes[r] = inboxSubject(group, epoch, r)
	}
	for _, subj := range []string{inboxWildcard(group, rank), bcastWildcard(group), ctlSubject(group)} {
		s, err := t.Subscribe(subj, m.ch)
		if err != nil {
			_ = m.Close()
			return nil, fmt.Errorf("collective: join %s epoch %d rank %d: %w", group, epoch, rank, err)
		}
		m.subs = append(m.subs, s)
	}
	if err := m.handshake(ctx); err != nil {
		_ = m.Close()
		return nil, fmt.Errorf("collective: join %s epoch %d rank %d/%d: %w", group, epoch, rank, size, err)
	}
	m.log.Debug("joined", "size", size, "chunk_bytes", chunk, "window", m.window)
	return m, nil
}

// Rank returns the member's rank.
func (m *Member) Rank() int { return m.rank }

// Size returns the group size.
func (m *Member) Size() int { return m.size }

// Epoch returns the member's epoch.
func (m *Member) Epoch() uint64 { return m.epoch }

// Group returns the group id.
func (m *Member) Group() string { return m.group }

// ChunkBytes returns the data bytes per message in effect (Config.ChunkBytes
// capped by the transport's max payload).
func (m *Member) ChunkBytes() int { return m.chunkBytes }

// Window returns how many chunk rounds ahead of the all-gather the
// reduce-scatter sender may run (see Config.MaxInflight).
func (m *Member) Window() int { return m.window }

// Algorithm returns the algorithm AllReduce uses for a buffer of n
// float32.
func (m *Member) Algorithm(n int) Algorithm {
	switch m.cfg.Algorithm {
	case AlgoRSAG, AlgoDirect:
		return m.cfg.Algorithm
	}
	if 4*n <= m.cfg.SmallThreshold {
		return AlgoDirect
	}
	return AlgoRSAG
}

// Close leaves the group: it unsubscribes and makes a call in progress
// return ErrClosed. It does not notify the other members (who may still be
// finishing the last call); they time out if they call again. Close is
// idempotent.
func (m *Member) Close() error {
	var errs []error
	m.closeOnce.Do(func() {
		close(m.closed)
		for _, s := range m.subs {
			if err := s.Unsubscribe(); err != nil {
				errs = append(errs, err)
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("collective: close: %w", err)
	}
	return nil
}

// AnnounceEpoch tells every member of group that epoch is current: members
// of older epochs fail their call in progress (or their next call) with
// ErrStaleEpoch. The coordinator calls it when it forms a new epoch.
func AnnounceEpoch(t Transport, group string, epoch uint64) error {
	if !validGroup(group) {
		return fmt.Errorf("%w: group %q is not a single subject token", ErrInvalid, group)
	}
	f := frame{kind: kindEpoch, epoch: epoch, enc: encF32}
	if err := t.Publish(ctlSubject(group), f.header(), nil); err != nil {
		return fmt.Errorf("collective: announce epoch %d of %s: %w", epoch, group, err)
	}
	return nil
}

func (m *Member) helloInfo() helloInfo {
	return helloInfo{
		ID:          m.id,
		Size:        m.size,
		Algorithm:   m.cfg.Algorithm,
		Compression: m.cfg.Compression,
		ChunkBytes:  m.chunkBytes,
		Small:       m.cfg.SmallThreshold,
	}
}

// checkHello validates a peer's hello or ack.
func (m *Member) checkHello(f frame, data []byte) error {
	if f.from >= m.size {
		return fmt.Errorf("%w: rank %d is outside group size %d", ErrMismatch, f.from, m.size)
	}
	var h helloInfo
	if err := json.Unmarshal(data, &h); err != nil {
		return fmt.Errorf("%w: rank %d sent a bad %s: %v", ErrMismatch, f.from, f.kind, err)
	}
	if f.from == m.rank {
		if h.ID != m.id {
			return fmt.Errorf("%w: rank %d joined twice (ids %s and %s)", ErrDuplicateRank, m.rank, m.id, h.ID)
		}
		return nil
	}
	mine := m.helloInfo()
	mine.ID = h.ID
	if h != mine {
		return fmt.Errorf("%w: rank %d has size=%d algorithm=%s compression=%s chunk_bytes=%d small_threshold=%d; rank %d has size=%d algorithm=%s compression=%s chunk_bytes=%d small_threshold=%d",
			ErrMismatch, f.from, h.Size, h.Algorithm, h.Compression, h.ChunkBytes, h.Small,
			m.rank, mine.Size, mine.Algorithm, mine.Compression, mine.ChunkBytes, mine.Small)
	}
	return nil
}

func (m *Member) sendHello(k kind, subject string) error {
	data, err := json.Marshal(m.helloInfo())
	if err != nil {
		return err
	}
	f := frame{kind: k, epoch: m.epoch, from: m.rank, enc: m.enc}
	return m.t.Publish(subject, f.header(), data)
}

// handshake broadcasts hellos (with backoff) until a hello or ack from
// every other rank has arrived; it acks every hello it sees. A message
// from a peer proves that the peer's subscriptions were registered before
// it (they precede its first hello on its transport).
func (m *Member) handshake(ctx context.Context) error {
	if m.size == 1 {
		return nil
	}
	ctx, cancel := m.deadline(ctx)
	defer cancel()
	seen := make([]bool, m.size)
	seen[m.rank] = true
	left := m.size - 1
	if err := m.sendHello(kindHello, m.bcast); err != nil {
		return err
	}
	interval := 10 * time.Millisecond
	tick := time.NewTimer(interval)
	defer tick.Stop()
	for left > 0 {
		select {
		case msg := <-m.ch:
			f, err := parseFrame(msg.Header)
			if err != nil {
				m.log.Debug("dropping malformed message", "subject", msg.Subject)
				continue
			}
			if f.epoch == m.epoch && (f.kind == kindHello || f.kind == kindAck) {
				if f.from >= m.size {
					return fmt.Errorf("%w: rank %d is outside group size %d", ErrMismatch, f.from, m.size)
				}
				if err := m.checkHello(f, msg.Data); err != nil {
					// Make sure the other side learns it too: it may
					// have missed our hellos.
					to := f.from
					if errors.Is(err, ErrDuplicateRank) {
						to = m.rank
					}
					_ = m.sendHello(kindAck, m.inboxes[to])
					return err
				}
				if f.from == m.rank {
					continue
				}
				if !seen[f.from] {
					seen[f.from] = true
					left--
				}
				if f.kind == kindHello {
					if err := m.sendHello(kindAck, m.inboxes[f.from]); err != nil {
						return err
					}
				}
				continue
			}
			if err := m.handle(nil, msg, f); err != nil {
				return err
			}
		case <-tick.C:
			if err := m.sendHello(kindHello, m.bcast); err != nil {
				return err
			}
			interval = min(2*interval, 500*time.Millisecond)
			tick.Reset(interval)
		case <-m.closed:
			return ErrClosed
		case <-ctx.Done():
			var missing []int
			for r, ok := range seen {
				if !ok {
					missing = append(missing, r)
				}
			}
			return m.ctxErr(ctx, fmt.Sprintf("waiting for ranks %v to join", missing))
		}
	}
	return nil
}

// deadline bounds ctx by cfg.Timeout.
func (m *Member) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, m.cfg.Timeout, errTimeoutCause)
}

var errTimeoutCause = errors.New("config timeout")

// ctxErr turns the end of a deadline context into an error.
func (m *Member) ctxErr(ctx context.Context, what string) error {
	if context.Cause(ctx) == errTimeoutCause {
		return fmt.Errorf("%w after %v: %s", ErrTimeout, m.cfg.Timeout, what)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w (context deadline): %s: %w", ErrTimeout, what, ctx.Err())
	}
	return fmt.Errorf("collective: %s: %w", what, context.Cause(ctx))
}

// handle processes a message outside the current call's data path: epoch
// checks, refusals, hellos, aborts and stashing of the next call's data. c
// is nil outside a call (Join). It returns a non-nil error when the member
// must fail.
func (m *Member) handle(c *call, msg *Msg, f frame) error {
	if f.epoch > m.epoch {
		m.newer = max(m.newer, f.epoch)
		who := "the coordinator"
		if f.kind != kindEpoch {
			who = fmt.Sprintf("rank %d", f.from)
		}
		return fmt.Errorf("%w: member has epoch %d, %s has epoch %d", ErrStaleEpoch, m.epoch, who, f.epoch)
	}
	if f.kind == kindEpoch || f.kind == kindStale {
		return nil
	}
	if f.epoch < m.epoch {
		m.refuse(f)
		return nil
	}
	switch f.kind {
	case kindHello:
		if err := m.checkHello(f, msg.Data); err != nil {
			return err
		}
		if f.from != m.rank {
			return m.sendHello(kindAck, m.inboxes[f.from])
		}
	case kindAck:
	case kindAbort:
		if f.from != m.rank {
			return fmt.Errorf("%w: rank %d failed call %d: %s", ErrAborted, f.from, f.seq, msg.Data)
		}
	case kindRS, kindAG, kindDirect:
		if f.from == m.rank {
			return nil // our own broadcast
		}
		if c != nil && f.seq == c.seq {
			return c.accept(f, msg)
		}
		if f.seq == m.seq+1 {
			m.stash = append(m.stash, msg)
		}
	}
	return nil
}

// refuse tells a member of an older epoch that it is stale (once per call
// for each epoch and rank).
func (m *Member) refuse(f frame) {
	k := refusal{f.epoch, f.from}
	if _, ok := m.refused[k]; ok {
		return
	}
	m.refused[k] = struct{}{}
	r := frame{kind: kindStale, epoch: m.epoch, from: m.rank, enc: m.enc}
	if err := m.t.Publish(inboxSubject(m.group, f.epoch, f.from), r.header(), nil); err != nil {
		m.log.Debug("refusing stale member", "their_epoch", f.epoch, "their_rank", f.from, "err", err)
	}
}
