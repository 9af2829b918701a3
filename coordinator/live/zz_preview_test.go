package live

import (
	"math"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/herdml/herd/internal/proto"
)

func TestZZPreview(t *testing.T) {
	if os.Getenv("LIVE_PREVIEW") == "" {
		t.Skip()
	}
	f := newFake()
	j := f.st.Jobs["job-2"]
	j.Log = j.Log[:1]
	j.LogSeq = 1
	for i := 1; i <= 240; i++ {
		j.LogSeq++
		l := 2.5*math.Exp(-float64(i)/60) + 0.6 + 0.05*math.Sin(float64(i))
		j.Log = append(j.Log, proto.LogEntry{Seq: j.LogSeq, Kind: "step", Step: &proto.StepStat{Step: i, TotalSteps: 400, Loss: l, StepMs: 210, AllReduceMs: 38, TokensPerSec: 11800 + 400*math.Sin(float64(i)/7), At: t0.Add(time.Duration(i) * 210 * time.Millisecond)}})
		j.Step, j.Loss, j.TokensPerSec, j.StepMs, j.TotalSteps = i, l, 11800, 210, 400
	}
	j.Log = append(j.Log, proto.LogEntry{Seq: 999, Kind: "event", Time: t0, Message: "checkpoint at step 200: /out/checkpoints/step-200"})
	j.Checkpoints = append(j.Checkpoints, proto.Checkpoint{Step: 200, Path: "/home/user/runs/tiny/checkpoints/step-200", Time: t0})
	http.ListenAndServe("127.0.0.1:18080", NewHandler(f, nil))
}
