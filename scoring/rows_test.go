package scoring

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestRowBytesAndPlanFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rows.jsonl")
	data := `{"id":"a","text":"hello"}
{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"there"}]}
not json
{"id":7,"text":""}
`
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := RowBytes(path)
	if err != nil {
		t.Fatal(err)
	}
	// Strings only: "a"+"hello"; "user"+"hi"+"assistant"+"there"; a bad
	// row counts 1; an empty text counts 1 (never 0).
	if want := []int{6, 20, 1, 1}; !slices.Equal(got, want) {
		t.Fatalf("RowBytes = %v, want %v", got, want)
	}
	plan, fp, err := PlanFile(path, TaskLoss, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan) != 2 || !slices.Equal(plan[0].Rows, []int{0, 1}) {
		t.Fatalf("plan %+v", plan)
	}
	// The fingerprint follows the plan and the task.
	_, fp2, _ := PlanFile(path, TaskLoss, 3)
	_, fp3, _ := PlanFile(path, TaskGenerate, 2)
	_, fp4, _ := PlanFile(path, TaskLoss, 2)
	if fp == fp2 || fp == fp3 || fp != fp4 {
		t.Fatalf("fingerprints %s %s %s %s", fp, fp2, fp3, fp4)
	}
	if _, _, err := PlanFile(filepath.Join(t.TempDir(), "missing.jsonl"), TaskLoss, 2); err == nil {
		t.Fatal("no error for a missing file")
	}
}
