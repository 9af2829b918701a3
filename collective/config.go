package collective

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Algorithm selects how AllReduce moves data.
type Algorithm string

// Algorithms.
const (
	// AlgoAuto uses AlgoDirect for buffers of at most
	// Config.SmallThreshold bytes, AlgoRSAG otherwise.
	AlgoAuto Algorithm = "auto"
	// AlgoRSAG is reduce-scatter then all-gather: member r owns 1/N of the
	// buffer, receives everyone's part of it, reduces it and broadcasts
	// the result. Bandwidth-optimal: about (3N-2)·S bytes cross the
	// server for a buffer of S bytes.
	AlgoRSAG Algorithm = "rsag"
	// AlgoDirect broadcasts every member's whole buffer; each member
	// reduces all of them locally. One hop, N²·S bytes: best for small
	// buffers.
	AlgoDirect Algorithm = "direct"
)

// Compression selects the wire format of buffer data.
type Compression string

// Compressions.
const (
	// CompressNone sends float32 as is.
	CompressNone Compression = "none"
	// CompressBF16 sends bfloat16 (8-bit exponent, 7-bit mantissa): same
	// range as float32, about 3 significant digits. Half the bytes.
	CompressBF16 Compression = "bf16"
	// CompressFP16 sends IEEE half precision (5-bit exponent, 10-bit
	// mantissa): about 3.3 digits, but overflows above 65504 and loses
	// values below 6e-8. Half the bytes.
	CompressFP16 Compression = "fp16"
)

// Limits and defaults for Config.
const (
	DefaultTimeout        = 60 * time.Second
	MaxAutoChunkBytes     = 2 << 20
	MinChunkBytes         = 4 << 10
	MaxChunkBytes         = 64 << 20
	DefaultSmallThreshold = 64 << 10
	DefaultQueueLen       = 1024
	DefaultMaxInflight    = 32 << 20
	// HeaderRoom is the part of the transport's max payload kept for
	// message headers; chunks carry at most MaxPayload-HeaderRoom bytes.
	HeaderRoom = 512
)

// Config tunes a member. All members of a group must use the same
// Algorithm, Compression, ChunkBytes (after capping by max payload) and
// SmallThreshold; Join checks this and fails with ErrMismatch otherwise.
type Config struct {
	// Algorithm: AlgoAuto (default), AlgoRSAG or AlgoDirect.
	Algorithm Algorithm
	// Compression of the wire format: CompressNone (default), CompressBF16
	// or CompressFP16. Accumulation is always float32. With compression
	// the result is q(Σ q(x_r)) where q rounds to the wire format (round
	// to nearest even, NaN and ±Inf preserved), identical on every member.
	Compression Compression
	// Timeout bounds one Join or AllReduce call (together with the
	// context's deadline, whichever is sooner). It must cover the transfer
	// of the largest buffer; when a member dies the survivors return
	// ErrTimeout at most this long after the call started. Default 60s;
	// must be positive.
	Timeout time.Duration
	// ChunkBytes is the most buffer bytes per message. 0 (the default)
	// means auto: the largest size up to MaxAutoChunkBytes (2 MiB) with
	// which two rounds of chunks in flight toward a member, 4(N-1)
	// chunks, fit in MaxInflight (N = 4: 2 MiB; N = 8: 1.1 MiB; N = 16:
	// 544 KiB), at least MinChunkBytes. Always capped at the transport's
	// max payload minus HeaderRoom. Valid: 0 or
	// MinChunkBytes..MaxChunkBytes.
	ChunkBytes int
	// SmallThreshold: with AlgoAuto, buffers of at most this many bytes
	// (4 per float32) use AlgoDirect. Default 64 KiB; 0 is allowed (never
	// direct); must not be negative.
	SmallThreshold int
	// QueueLen is the capacity of the member's receive channel. Default
	// 1024; must not be negative.
	QueueLen int
	// MaxInflight bounds (rsag) the bytes that may be on their way to one
	// member: sent by the others but not yet consumed by it, wherever they
	// wait (the server's outbound buffer for the member's connection, the
	// sockets, the member's receive queue). The sender of each member
	// starts chunk round k (its k-th chunk for every owner) only once
	// round k-W is complete locally, which keeps at most 2(N-1)·W chunks
	// in flight toward any member; W is the largest window with
	// 2(N-1)·W·chunk ≤ MaxInflight, at least 2 (so that a round overlaps
	// the previous one's all-gather). Keep it below the server's
	// max_pending (nats-server default 64 MiB), or the server disconnects
	// a member that falls behind as a slow consumer. Default 32 MiB; must
	// not be negative. With auto ChunkBytes it sets the chunk size, which
	// all members must agree on (Join checks).
	MaxInflight int
	// Logger receives debug and warning messages; nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults documented on Config's fields
// (ChunkBytes 0: auto).
func DefaultConfig() Config {
	return Config{
		Algorithm:      AlgoAuto,
		Compression:    CompressNone,
		Timeout:        DefaultTimeout,
		SmallThreshold: DefaultSmallThreshold,
		QueueLen:       DefaultQueueLen,
		MaxInflight:    DefaultMaxInflight,
	}
}

// withDefaults fills zero values (except SmallThreshold and ChunkBytes,
// where 0 is meaningful) with defaults.
func (c Config) withDefaults() Config {
	if c.Algorithm == "" {
		c.Algorithm = AlgoAuto
	}
	if c.Compression == "" {
		c.Compression = CompressNone
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.QueueLen == 0 {
		c.QueueLen = DefaultQueueLen
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = DefaultMaxInflight
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate returns every problem with c, joined; each wraps ErrInvalid and
// names the field. Zero values are valid (they mean the default).
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...)))
	}
	switch c.Algorithm {
	case "", AlgoAuto, AlgoRSAG, AlgoDirect:
	default:
		bad("Algorithm: %q is not auto, rsag or direct", c.Algorithm)
	}
	switch c.Compression {
	case "", CompressNone, CompressBF16, CompressFP16:
	default:
		bad("Compression: %q is not none, bf16 or fp16", c.Compression)
	}
	if c.Timeout < 0 {
		bad("Timeout: %v is negative", c.Timeout)
	}
	if c.ChunkBytes != 0 && (c.ChunkBytes < MinChunkBytes || c.ChunkBytes > MaxChunkBytes) {
		bad("ChunkBytes: %d out of range %d..%d", c.ChunkBytes, MinChunkBytes, MaxChunkBytes)
	}
	if c.SmallThreshold < 0 {
		bad("SmallThreshold: %d is negative", c.SmallThreshold)
	}
	if c.QueueLen < 0 {
		bad("QueueLen: %d is negative", c.QueueLen)
	}
	if c.MaxInflight < 0 {
		bad("MaxInflight: %d is negative", c.MaxInflight)
	}
	return errors.Join(errs...)
}

func (c Compression) encoding() encoding {
	switch c {
	case CompressBF16:
		return encBF16
	case CompressFP16:
		return encF16
	default:
		return encF32
	}
}

// chunkAndWindow returns the chunk size, at most room (the transport's max
// payload less HeaderRoom), and the flow-control window for a group of
// size members.
func (c Config) chunkAndWindow(size, room int) (chunk, window int) {
	peers := max(1, size-1)
	chunk = c.ChunkBytes
	if chunk == 0 {
		chunk = min(MaxAutoChunkBytes, max(MinChunkBytes, c.MaxInflight/(4*peers))) / MinChunkBytes * MinChunkBytes
	}
	chunk = min(chunk, room) &^ 7
	return chunk, max(2, c.MaxInflight/(2*peers*chunk))
}
