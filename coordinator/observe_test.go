package coordinator

import (
	"testing"

	"github.com/herdml/herd/internal/proto"
)

func TestRecentSteps(t *testing.T) {
	j := &Job{}
	j.event(t0, "group epoch 1")
	for i := 1; i <= 5; i++ {
		j.addLog(t0, proto.LogEntry{Kind: "step", Step: &proto.StepStat{Step: i}})
		j.event(t0, "between")
	}
	steps := func(ss []proto.StepStat) []int {
		var out []int
		for _, s := range ss {
			out = append(out, s.Step)
		}
		return out
	}
	if got := steps(j.RecentSteps(3)); len(got) != 3 || got[0] != 3 || got[2] != 5 {
		t.Fatalf("RecentSteps(3) = %v, want [3 4 5]", got)
	}
	if got := steps(j.RecentSteps(10)); len(got) != 5 || got[0] != 1 {
		t.Fatalf("RecentSteps(10) = %v, want [1 2 3 4 5]", got)
	}
	if got := (&Job{}).RecentSteps(3); got != nil {
		t.Fatalf("RecentSteps of an empty log = %v", got)
	}
}

func TestLastEval(t *testing.T) {
	j := &Job{}
	if j.LastEval() != nil {
		t.Fatal("LastEval of an empty log")
	}
	for i := 1; i <= 6; i++ {
		s := &proto.StepStat{Step: i}
		if i%2 == 0 && i < 6 {
			s.EvalLoss, s.EvalTokens = float64(i), 10
		}
		j.addLog(t0, proto.LogEntry{Kind: "step", Step: s})
	}
	if e := j.LastEval(); e == nil || e.Step != 4 || e.EvalLoss != 4 {
		t.Fatalf("LastEval = %+v, want step 4", e)
	}
}
