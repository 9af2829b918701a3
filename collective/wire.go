package collective

import (
	"errors"
	"strconv"
	"strings"
)

// SubjectPrefix starts every subject the package uses.
const SubjectPrefix = "herd.coll"

// Subjects (see docs/collective.md):
//
//	herd.coll.<group>.<epoch>.<rank>  inbox of one member (RS chunks, acks, refusals)
//	herd.coll.<group>.<epoch>.all     broadcast (hello, AG chunks, direct chunks, abort)
//	herd.coll.<group>.ctl             control (epoch announcements)
//
// A member subscribes to its inbox and the broadcast subject with "*" in
// place of the epoch, so it sees traffic of other epochs: newer means it
// is stale, older is refused.
func inboxSubject(group string, epoch uint64, rank int) string {
	return SubjectPrefix + "." + group + "." + strconv.FormatUint(epoch, 10) + "." + strconv.Itoa(rank)
}

func inboxWildcard(group string, rank int) string {
	return SubjectPrefix + "." + group + ".*." + strconv.Itoa(rank)
}

func bcastSubject(group string, epoch uint64) string {
	return SubjectPrefix + "." + group + "." + strconv.FormatUint(epoch, 10) + ".all"
}

func bcastWildcard(group string) string { return SubjectPrefix + "." + group + ".*.all" }

func ctlSubject(group string) string { return SubjectPrefix + "." + group + ".ctl" }

// validGroup reports whether g can be one subject token.
func validGroup(g string) bool {
	return g != "" && len(g) <= 128 && !strings.ContainsAny(g, ".*> \t\r\n") && g != "ctl"
}

// kind is the message type.
type kind uint8

const (
	kindHello  kind = 1 // broadcast: I joined (payload: helloInfo)
	kindAck    kind = 2 // inbox: answer to a hello (payload: helloInfo)
	kindRS     kind = 3 // inbox of owner: my contribution to one of your chunks
	kindAG     kind = 4 // broadcast: owner's reduced chunk
	kindDirect kind = 5 // broadcast: a chunk of my whole buffer (direct)
	kindAbort  kind = 6 // broadcast: I failed call seq; the epoch is dead (payload: reason)
	kindStale  kind = 7 // inbox of a stale member: refused, epoch is the current one
	kindEpoch  kind = 8 // control: the group's current epoch is epoch
)

func (k kind) String() string {
	switch k {
	case kindHello:
		return "hello"
	case kindAck:
		return "ack"
	case kindRS:
		return "reduce-scatter"
	case kindAG:
		return "all-gather"
	case kindDirect:
		return "direct"
	case kindAbort:
		return "abort"
	case kindStale:
		return "stale"
	case kindEpoch:
		return "epoch"
	default:
		return "kind(" + strconv.Itoa(int(k)) + ")"
	}
}

// wireVersion is the first field of every header; bump on incompatible
// changes.
const wireVersion = 1

// headerKey carries the frame in one NATS header.
const headerKey = "Herd-Coll"

// frame is the metadata of one message, carried in the Herd-Coll header as
// space-separated decimals:
//
//	<version> <kind> <epoch> <seq> <from> <chunk> <count> <total> <enc> <pad>
//
// seq numbers AllReduce calls from 1 (0 during Join); chunk indexes the
// call's chunk table; count and total are element counts; pad is dashes
// that make the whole NATS header block a multiple of 8 bytes so that the
// payload after it stays aligned for zero-copy float32 views.
type frame struct {
	kind  kind
	epoch uint64
	seq   uint64
	from  int
	chunk int
	count int
	total int
	enc   encoding
}

var errBadFrame = errors.New("collective: malformed message header")

// header encodes f.
func (f *frame) header() Header {
	var b [160]byte
	v := b[:0]
	v = strconv.AppendUint(v, wireVersion, 10)
	v = append(v, ' ')
	v = strconv.AppendUint(v, uint64(f.kind), 10)
	v = append(v, ' ')
	v = strconv.AppendUint(v, f.epoch, 10)
	v = append(v, ' ')
	v = strconv.AppendUint(v, f.seq, 10)
	v = append(v, ' ')
	v = strconv.AppendInt(v, int64(f.from), 10)
	v = append(v, ' ')
	v = strconv.AppendInt(v, int64(f.chunk), 10)
	v = append(v, ' ')
	v = strconv.AppendInt(v, int64(f.count), 10)
	v = append(v, ' ')
	v = strconv.AppendInt(v, int64(f.total), 10)
	v = append(v, ' ')
	v = strconv.AppendUint(v, uint64(f.enc), 10)
	v = append(v, ' ', '-')
	// "NATS/1.0\r\n" + key + ": " + value + "\r\n" + "\r\n"
	for (len("NATS/1.0\r\n")+len(headerKey)+2+len(v)+4)%8 != 0 {
		v = append(v, '-')
	}
	return Header{headerKey: []string{string(v)}}
}

// parseFrame decodes the Herd-Coll header of m.
func parseFrame(h Header) (frame, error) {
	var f frame
	vs := h[headerKey]
	if len(vs) != 1 {
		return f, errBadFrame
	}
	s := vs[0]
	var fields [9]uint64
	for i := range fields {
		s = strings.TrimLeft(s, " ")
		j := strings.IndexByte(s, ' ')
		tok := s
		if j >= 0 {
			tok, s = s[:j], s[j:]
		} else {
			s = ""
		}
		if tok == "" {
			return f, errBadFrame
		}
		n, err := strconv.ParseUint(tok, 10, 64)
		if err != nil {
			return f, errBadFrame
		}
		fields[i] = n
	}
	if fields[0] != wireVersion {
		return f, errBadFrame
	}
	const maxInt = uint64(1 << 40)
	if fields[4] > maxInt || fields[5] > maxInt || fields[6] > maxInt || fields[7] > maxInt || fields[8] > uint64(encF16) || fields[1] > 255 {
		return f, errBadFrame
	}
	f.kind = kind(fields[1])
	f.epoch = fields[2]
	f.seq = fields[3]
	f.from = int(fields[4])
	f.chunk = int(fields[5])
	f.count = int(fields[6])
	f.total = int(fields[7])
	f.enc = encoding(fields[8])
	return f, nil
}
