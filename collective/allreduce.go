package collective

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
)

// chunkTable splits a buffer of n elements into chunks of at most elems
// elements. For rsag, rank r owns shard r (the first n%size shards have one
// element more) and the chunks are numbered shard by shard; for direct,
// chunks cover the buffer and have no owner.
type chunkTable struct {
	n, size, elems int
	rsag           bool
	off, cnt       []int
	owner          []int
	first          []int   // rsag: first chunk of shard r; first[size] = len(off)
	lo             []int   // rsag: first element of shard r; lo[size] = n
	rounds         []int32 // rsag: chunks in round k (chunk k of every shard)
}

func newChunkTable(n, size, elems int, rsag bool) *chunkTable {
	t := &chunkTable{n: n, size: size, elems: elems, rsag: rsag}
	add := func(owner, from, to int) {
		for o := from; o < to; o += elems {
			t.off = append(t.off, o)
			t.cnt = append(t.cnt, min(elems, to-o))
			t.owner = append(t.owner, owner)
		}
	}
	if !rsag {
		add(-1, 0, n)
		return t
	}
	q, rem := n/size, n%size
	t.first = make([]int, size+1)
	t.lo = make([]int, size+1)
	at := 0
	for r := range size {
		t.first[r] = len(t.off)
		t.lo[r] = at
		l := q
		if r < rem {
			l++
		}
		add(r, at, at+l)
		at += l
		for k := range len(t.off) - t.first[r] {
			if k == len(t.rounds) {
				t.rounds = append(t.rounds, 0)
			}
			t.rounds[k]++
		}
	}
	t.first[size] = len(t.off)
	t.lo[size] = n
	return t
}

// call is the state of one AllReduce.
type call struct {
	m    *Member
	seq  uint64
	buf  []float32
	op   Op
	tab  *chunkTable
	rsag bool
	// Chunks this member reduces: [ownFirst, ownFirst+ownN); their
	// accumulators live in m.acc starting at element accBase.
	ownFirst, ownN, accBase int
	ownLeft, agLeft         int
	next                    []int32 // per owned chunk: next rank to add
	pend                    []*Msg  // per owned chunk × rank: waiting contribution
	agGot                   []bool  // per chunk (rsag): owner's result received
	// Flow control (rsag). Round k is chunk k of every shard. roundLeft
	// counts the round's chunks not yet final here (reduced if owned,
	// gathered otherwise); the receive loop sends one token on rounds per
	// completed round, in order, and the sender takes one before each
	// round from the window on.
	roundLeft []int32
	roundNext int
	rounds    chan struct{}
}

// AllReduce replaces buf, on every member, with the element-wise reduction
// (Sum or Mean) of all members' bufs. All members must call AllReduce the
// same number of times with buffers of the same length. The result is
// bit-identical on every member: each element is accumulated in float32 in
// rank order 0..N-1 (x0+x1+...), by one member (rsag) or by each member
// identically (direct), and with compression the wire rounding is applied
// the same way everywhere.
//
// The call returns within cfg.Timeout (or ctx's deadline if sooner). On
// any error buf holds unspecified data and the member is broken: later
// calls return ErrBroken; Close it and join the next epoch. On an error
// other than ErrStaleEpoch or ErrClosed the member also tells the group
// (the others fail with ErrAborted instead of waiting for their timeout;
// with ErrStaleEpoch when this member learnt of a newer epoch).
func (m *Member) AllReduce(ctx context.Context, buf []float32, op Op) error {
	if !m.busy.CompareAndSwap(false, true) {
		return ErrBusy
	}
	defer m.busy.Store(false)
	select {
	case <-m.closed:
		return ErrClosed
	default:
	}
	if m.failed != nil {
		return fmt.Errorf("%w: %w", ErrBroken, m.failed)
	}
	if op != Sum && op != Mean {
		return fmt.Errorf("%w: op %v", ErrInvalid, op)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("collective: all-reduce not started: %w", err)
	}
	m.seq++
	if len(buf) == 0 {
		return nil
	}
	if m.size == 1 {
		localSet(m.enc, buf, buf)
		canonNaN(buf)
		return nil
	}
	err := m.allReduce(ctx, buf, op)
	if err != nil {
		m.failed = err
		switch {
		case errors.Is(err, ErrClosed) || errors.Is(err, ErrTransportClosed):
		case m.newer > m.epoch:
			// Pass the news on: the others are stale too.
			f := frame{kind: kindStale, epoch: m.newer, seq: m.seq, from: m.rank, enc: m.enc}
			if perr := m.t.Publish(m.bcast, f.header(), nil); perr != nil {
				m.log.Debug("stale broadcast failed", "err", perr)
			}
		default:
			f := frame{kind: kindAbort, epoch: m.epoch, seq: m.seq, from: m.rank, enc: m.enc}
			if perr := m.t.Publish(m.bcast, f.header(), []byte(err.Error())); perr != nil {
				m.log.Debug("abort broadcast failed", "err", perr)
			}
		}
		return fmt.Errorf("collective: all-reduce #%d (group %s, epoch %d, rank %d/%d, %d floats): %w", m.seq, m.group, m.epoch, m.rank, m.size, len(buf), err)
	}
	return nil
}

func (m *Member) table(n int, rsag bool) *chunkTable {
	i := 0
	if !rsag {
		i = 1
	}
	elems := m.chunkBytes / m.enc.size()
	if t := m.tabs[i]; t != nil && t.n == n {
		return t
	}
	m.tabs[i] = newChunkTable(n, m.size, elems, rsag)
	return m.tabs[i]
}

func (m *Member) newCall(buf []float32, op Op) *call {
	rsag := m.Algorithm(len(buf)) == AlgoRSAG
	tab := m.table(len(buf), rsag)
	c := &call{m: m, seq: m.seq, buf: buf, op: op, tab: tab, rsag: rsag}
	span := len(buf)
	if rsag {
		c.ownFirst = tab.first[m.rank]
		c.ownN = tab.first[m.rank+1] - c.ownFirst
		c.accBase = tab.lo[m.rank]
		span = tab.lo[m.rank+1] - tab.lo[m.rank]
		c.agLeft = len(tab.off) - c.ownN
		m.agGot = grow(m.agGot, len(tab.off))
		clear(m.agGot)
		c.agGot = m.agGot
		m.roundLeft = grow(m.roundLeft, len(tab.rounds))
		copy(m.roundLeft, tab.rounds)
		c.roundLeft = m.roundLeft
		c.rounds = make(chan struct{}, len(tab.rounds))
	} else {
		c.ownN = len(tab.off)
	}
	c.ownLeft = c.ownN
	m.acc = grow(m.acc, span)
	m.next = grow(m.next, c.ownN)
	clear(m.next[:c.ownN])
	c.next = m.next[:c.ownN]
	m.pend = grow(m.pend, c.ownN*m.size)
	clear(m.pend)
	c.pend = m.pend[:c.ownN*m.size]
	if need := m.chunkBytes; len(m.wire) < need {
		m.wire = make([]byte, need)
	}
	clear(m.refused)
	return c
}

func grow[T any](s []T, n int) []T {
	if cap(s) >= n {
		return s[:n]
	}
	return make([]T, n)
}

func (m *Member) allReduce(ctx context.Context, buf []float32, op Op) (err error) {
	ctx, cancel := m.deadline(ctx)
	defer cancel()
	c := m.newCall(buf, op)
	if err := m.drainControl(c); err != nil {
		return err
	}
	defer func() {
		clear(c.pend) // drop references to received payloads
	}()

	var wg sync.WaitGroup
	sendErr := make(chan error, 1)
	defer wg.Wait()
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		send := c.sendContributions
		if !c.rsag {
			send = c.sendAll
		}
		if err := send(sctx); err != nil {
			sendErr <- err
		}
	}()

	// Chunks whose first contributions are ours can start now.
	for i := range c.ownN {
		if err := c.advance(i); err != nil {
			return err
		}
	}
	stash := m.stash
	m.stash = nil
	for i, msg := range stash {
		stash[i] = nil
		f, err := parseFrame(msg.Header)
		if err != nil {
			continue
		}
		if err := m.handle(c, msg, f); err != nil {
			return err
		}
	}
	for c.ownLeft > 0 || c.agLeft > 0 {
		select {
		case msg := <-m.ch:
			f, err := parseFrame(msg.Header)
			if err != nil {
				m.log.Debug("dropping malformed message", "subject", msg.Subject)
				continue
			}
			if err := m.handle(c, msg, f); err != nil {
				return err
			}
		case err := <-sendErr:
			return err
		case <-m.closed:
			return ErrClosed
		case <-ctx.Done():
			return m.ctxErr(ctx, c.waitingFor())
		}
	}
	wg.Wait()
	select {
	case err := <-sendErr:
		return err
	default:
	}
	if !c.rsag {
		// Direct results wait in the accumulators until the sender, which
		// reads the whole buffer, is done.
		copy(buf, m.acc[:len(buf)])
	}
	return nil
}

// drainControl moves the messages queued before the call into the stash
// and acts on those that end the epoch (newer epoch, abort) first, so that
// a call does not succeed on data from peers that already gave up.
func (m *Member) drainControl(c *call) error {
	for {
		select {
		case msg := <-m.ch:
			m.stash = append(m.stash, msg)
			continue
		default:
		}
		break
	}
	for _, msg := range m.stash {
		f, err := parseFrame(msg.Header)
		if err != nil {
			continue
		}
		if f.epoch > m.epoch || (f.kind == kindAbort && f.epoch == m.epoch) {
			return m.handle(c, msg, f)
		}
	}
	return nil
}

// waitingFor describes what a call still lacks, for timeout errors.
func (c *call) waitingFor() string {
	missing := map[int]bool{}
	for i := range c.ownN {
		for r := int(c.next[i]); r < c.m.size; r++ {
			if r != c.m.rank && c.pend[i*c.m.size+r] == nil {
				missing[r] = true
			}
		}
	}
	if c.rsag {
		for g, got := range c.agGot {
			if !got && c.tab.owner[g] != c.m.rank {
				missing[c.tab.owner[g]] = true
			}
		}
	}
	ranks := make([]int, 0, len(missing))
	for r := range missing {
		ranks = append(ranks, r)
	}
	sort.Ints(ranks)
	return fmt.Sprintf("waiting for ranks %v (%d of %d owned chunks unreduced, %d chunks not gathered)", ranks, c.ownLeft, c.ownN, c.agLeft)
}

// sendContributions publishes this member's part of every other owner's
// chunks (rsag), interleaving owners so all of them work at once, at most
// m.window rounds ahead of what this member has seen completed: a round
// completes here only after every owner has consumed this member's chunk
// of it, so a member that falls behind stops its peers' senders instead of
// piling their data up in the server until it is cut off as a slow
// consumer.
func (c *call) sendContributions(ctx context.Context) error {
	m, tab := c.m, c.tab
	for k := range c.roundLeft {
		if k >= m.window {
			// Round k-window must be complete here: every owner has
			// consumed this member's chunks up to it.
			select {
			case <-c.rounds:
			case <-ctx.Done():
				return nil // the call is ending; its error is reported there
			}
		}
		for d := 1; d < m.size; d++ {
			o := (m.rank + d) % m.size
			if k >= tab.first[o+1]-tab.first[o] {
				continue
			}
			if err := ctx.Err(); err != nil {
				return nil // the call is ending; its error is reported there
			}
			g := tab.first[o] + k
			data := c.encodeForSend(g)
			f := frame{kind: kindRS, epoch: m.epoch, seq: c.seq, from: m.rank, chunk: g, count: tab.cnt[g], total: tab.n, enc: m.enc}
			if err := m.t.Publish(m.inboxes[o], f.header(), data); err != nil {
				return err
			}
		}
	}
	return nil
}

// final records that chunk g is final on this member (reduced here or
// gathered) and hands the sender a token for every round now complete.
func (c *call) final(g int) {
	c.roundLeft[g-c.tab.first[c.tab.owner[g]]]--
	for c.roundNext < len(c.roundLeft) && c.roundLeft[c.roundNext] == 0 {
		c.roundNext++
		c.rounds <- struct{}{} // capacity: one per round, never blocks
	}
}

// encodeForSend returns the wire bytes of chunk g of the buffer, from the
// sender goroutine's scratch (or a view of the buffer itself).
func (c *call) encodeForSend(g int) []byte {
	m := c.m
	src := c.buf[c.tab.off[g] : c.tab.off[g]+c.tab.cnt[g]]
	if m.enc == encF32 && nativeLE {
		return f32Bytes(src)
	}
	if len(m.sendBuf) < m.chunkBytes {
		m.sendBuf = make([]byte, m.chunkBytes)
	}
	return encode(m.enc, m.sendBuf, src)
}

// sendAll broadcasts the whole buffer (direct).
func (c *call) sendAll(ctx context.Context) error {
	m, tab := c.m, c.tab
	for g := range tab.off {
		if ctx.Err() != nil {
			return nil // the call is ending; its error is reported there
		}
		data := c.encodeForSend(g)
		f := frame{kind: kindDirect, epoch: m.epoch, seq: c.seq, from: m.rank, chunk: g, count: tab.cnt[g], total: tab.n, enc: m.enc}
		if err := m.t.Publish(m.bcast, f.header(), data); err != nil {
			return err
		}
	}
	return nil
}

// accept takes a data message of this call.
func (c *call) accept(f frame, msg *Msg) error {
	m, tab := c.m, c.tab
	if f.total != tab.n {
		return fmt.Errorf("%w: rank %d reduces %d floats, this member %d", ErrMismatch, f.from, f.total, tab.n)
	}
	if f.enc != m.enc {
		return fmt.Errorf("%w: rank %d sends %s, this member %s", ErrMismatch, f.from, f.enc, m.enc)
	}
	if f.from >= m.size {
		return fmt.Errorf("%w: rank %d is outside group size %d", ErrMismatch, f.from, m.size)
	}
	if f.chunk >= len(tab.off) || f.count != tab.cnt[f.chunk] || len(msg.Data) != f.count*m.enc.size() {
		return fmt.Errorf("%w: rank %d sent chunk %d with %d floats in %d bytes, which this member's chunking (%d chunks of ≤%d floats) does not have",
			ErrMismatch, f.from, f.chunk, f.count, len(msg.Data), len(tab.off), tab.elems)
	}
	switch f.kind {
	case kindRS, kindDirect:
		if (f.kind == kindRS) != c.rsag || (c.rsag && tab.owner[f.chunk] != m.rank) {
			return fmt.Errorf("%w: rank %d sent a %s message for chunk %d, which this member does not reduce with %s", ErrMismatch, f.from, f.kind, f.chunk, m.Algorithm(tab.n))
		}
		i := f.chunk - c.ownFirst
		slot := i*m.size + f.from
		if int(c.next[i]) > f.from || c.pend[slot] != nil {
			return nil // duplicate
		}
		c.pend[slot] = msg
		return c.advance(i)
	case kindAG:
		if !c.rsag || tab.owner[f.chunk] != f.from {
			return fmt.Errorf("%w: rank %d sent an all-gather message for chunk %d, which it does not own", ErrMismatch, f.from, f.chunk)
		}
		if c.agGot[f.chunk] {
			return nil // duplicate
		}
		c.agGot[f.chunk] = true
		c.agLeft--
		off := tab.off[f.chunk]
		decodeSet(m.enc, c.buf[off:off+f.count], msg.Data)
		msg.release()
		c.final(f.chunk)
	}
	return nil
}

// advance adds the contributions of owned chunk i that are due, in rank
// order, and finishes the chunk when all are in.
func (c *call) advance(i int) error {
	m := c.m
	if int(c.next[i]) >= m.size {
		return nil
	}
	g := c.ownFirst + i
	off, cnt := c.tab.off[g], c.tab.cnt[g]
	acc := m.acc[off-c.accBase : off-c.accBase+cnt]
	for int(c.next[i]) < m.size {
		r := int(c.next[i])
		if r == m.rank {
			if r == 0 {
				localSet(m.enc, acc, c.buf[off:off+cnt])
			} else {
				localAdd(m.enc, acc, c.buf[off:off+cnt])
			}
		} else {
			msg := c.pend[i*m.size+r]
			if msg == nil {
				return nil
			}
			c.pend[i*m.size+r] = nil
			if r == 0 {
				decodeSet(m.enc, acc, msg.Data)
			} else {
				decodeAdd(m.enc, acc, msg.Data)
			}
			msg.release()
		}
		c.next[i]++
	}
	return c.finish(g, acc)
}

// finish applies the op to a reduced chunk, broadcasts it (rsag) and
// writes it into the buffer, rounded to the wire format as the receivers
// will see it.
func (c *call) finish(g int, acc []float32) error {
	m := c.m
	c.ownLeft--
	finishChunk(acc, c.op, m.size)
	if !c.rsag {
		localSet(m.enc, acc, acc) // q, in place; copied to the buffer at the end
		return nil
	}
	off, cnt := c.tab.off[g], c.tab.cnt[g]
	dst := c.buf[off : off+cnt]
	var data []byte
	switch {
	case m.enc != encF32:
		data = encodeKeep(m.enc, m.wire, acc, dst)
	case nativeLE:
		data = f32Bytes(acc)
		copy(dst, acc)
	default:
		data = encode(m.enc, m.wire, acc)
		copy(dst, acc)
	}
	f := frame{kind: kindAG, epoch: m.epoch, seq: c.seq, from: m.rank, chunk: g, count: cnt, total: c.tab.n, enc: m.enc}
	if err := m.t.Publish(m.bcast, f.header(), data); err != nil {
		return err
	}
	c.final(g)
	return nil
}
