package coordinator

import (
	"bytes"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/herdml/herd/internal/proto"
)

// FuzzReadSnapshot: a damaged snapshot is an error, never a panic.
func FuzzReadSnapshot(f *testing.F) {
	h := newFSMHarness(&testing.T{})
	h.populate()
	var buf bytes.Buffer
	if err := WriteSnapshot(&buf, h.f.State()); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte{0, 0, 0, 0, 2, '{', '}'})
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ReadSnapshot(bytes.NewReader(data), nil)
	})
}

// FuzzApply: any well-formed command (valid JSON for its type) applies
// without panicking, whatever its values.
func FuzzApply(f *testing.F) {
	f.Add(uint8(SubmitJobType), []byte(`{"name":"x","global_batch":4}`))
	f.Add(uint8(FormEpochType), []byte(`{"job":"job-1","epoch":1,"members":["a"]}`))
	f.Add(uint8(StepStatsType), []byte(`{"job":"job-1","stats":[{"step":1}]}`))
	f.Add(uint8(JobStatusType), []byte(`{"job":"job-1","status":"completed"}`))
	f.Fuzz(func(t *testing.T, typ uint8, payload []byte) {
		t0 := MessageType(typ % 9)
		h := newFSMHarness(t)
		h.mustApply(SubmitJobType, SubmitJobCmd{Name: "seed", GlobalBatch: 1})
		h.mustApply(RegisterWorkerType, RegisterWorkerCmd{Worker: proto.RegisterRequest{ID: "a"}})
		defer func() {
			if r := recover(); r != nil {
				// Only undecodable payloads may panic.
				if !bytes.Contains([]byte(r.(string)), []byte("undecodable")) {
					t.Fatalf("panic: %v", r)
				}
			}
		}()
		h.f.Apply(&raft.Log{Index: 10, Type: raft.LogCommand, Data: append([]byte{byte(t0)}, payload...)})
	})
}
