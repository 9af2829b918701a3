package coordinator

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/hashicorp/raft"
)

// A snapshot is a stream of records, each [type byte][length uint32, big
// endian][JSON]. The first record is the meta record; then one record per
// worker and per job. Record types are append-only like MessageType; an
// unknown type with IgnoreUnknownTypeFlag set is skipped.
type SnapshotType uint8

// Snapshot record types.
const (
	MetaSnapshot   SnapshotType = 0
	WorkerSnapshot SnapshotType = 1
	JobSnapshot    SnapshotType = 2
)

// maxRecord bounds one record (a job with its log is far smaller).
const maxRecord = 256 << 20

type snapshotMeta struct {
	Version int    `json:"version"`
	JobSeq  uint64 `json:"job_seq"`
}

type fsmSnapshot struct{ state *State }

// Persist implements raft.FSMSnapshot.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := WriteSnapshot(sink, s.state); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

// Release implements raft.FSMSnapshot.
func (s *fsmSnapshot) Release() {}

// WriteSnapshot writes st as snapshot records.
func WriteSnapshot(w io.Writer, st *State) error {
	bw := bufio.NewWriter(w)
	put := func(t SnapshotType, v any) error {
		data, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("coordinator: snapshot: %w", err)
		}
		var hdr [5]byte
		hdr[0] = byte(t)
		binary.BigEndian.PutUint32(hdr[1:], uint32(len(data)))
		if _, err := bw.Write(hdr[:]); err != nil {
			return err
		}
		_, err = bw.Write(data)
		return err
	}
	if err := put(MetaSnapshot, snapshotMeta{Version: 1, JobSeq: st.JobSeq}); err != nil {
		return err
	}
	for _, w := range st.WorkerList() {
		if err := put(WorkerSnapshot, w); err != nil {
			return err
		}
	}
	for _, j := range st.JobList() {
		if err := put(JobSnapshot, j); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// ReadSnapshot reads a snapshot written by WriteSnapshot into a new State.
func ReadSnapshot(r io.Reader, log *slog.Logger) (*State, error) {
	br := bufio.NewReader(r)
	st := NewState()
	first := true
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) && !first {
				return st, nil
			}
			return nil, fmt.Errorf("coordinator: snapshot: record header: %w", err)
		}
		t, n := SnapshotType(hdr[0]), binary.BigEndian.Uint32(hdr[1:])
		if n > maxRecord {
			return nil, fmt.Errorf("coordinator: snapshot: record of %d bytes", n)
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(br, data); err != nil {
			return nil, fmt.Errorf("coordinator: snapshot: record: %w", err)
		}
		if first && t != MetaSnapshot {
			return nil, fmt.Errorf("coordinator: snapshot: first record has type %d, want meta", t)
		}
		first = false
		var err error
		switch t {
		case MetaSnapshot:
			var m snapshotMeta
			if err = json.Unmarshal(data, &m); err == nil {
				st.JobSeq = m.JobSeq
			}
		case WorkerSnapshot:
			var w Worker
			if err = json.Unmarshal(data, &w); err == nil {
				st.Workers[w.ID] = &w
			}
		case JobSnapshot:
			var j Job
			if err = json.Unmarshal(data, &j); err == nil {
				st.Jobs[j.ID] = &j
			}
		default:
			if MessageType(t)&IgnoreUnknownTypeFlag == 0 {
				return nil, fmt.Errorf("coordinator: snapshot: unknown record type %d", t)
			}
			if log != nil {
				log.Warn("skipping unknown snapshot record", "type", uint8(t))
			}
		}
		if err != nil {
			return nil, fmt.Errorf("coordinator: snapshot: record type %d: %w", t, err)
		}
	}
}
