package scoring

import (
	"math/rand"
	"reflect"
	"testing"
)

func checkPartition(t *testing.T, plan []Batch, n int) {
	t.Helper()
	seen := make([]int, n)
	for id, b := range plan {
		if b.ID != id {
			t.Fatalf("batch %d has id %d", id, b.ID)
		}
		if len(b.Rows) == 0 {
			t.Fatalf("batch %d is empty", id)
		}
		for k, r := range b.Rows {
			if k > 0 && r <= b.Rows[k-1] {
				t.Fatalf("batch %d rows not ascending: %v", id, b.Rows)
			}
			seen[r]++
		}
	}
	for r, c := range seen {
		if c != 1 {
			t.Fatalf("row %d is in %d batches", r, c)
		}
	}
}

func TestPlanHandWorked(t *testing.T) {
	// Lengths 5 1 4 2 3 0, two per batch: sorted 5(0) 4(2) 3(4) 2(3) 1(1) 0(5).
	plan := Plan([]int{5, 1, 4, 2, 3, 0}, 2, 0)
	want := []Batch{
		{ID: 0, Rows: []int{0, 2}, MaxLen: 5, Tokens: 9},
		{ID: 1, Rows: []int{3, 4}, MaxLen: 3, Tokens: 5},
		{ID: 2, Rows: []int{1, 5}, MaxLen: 1, Tokens: 1},
	}
	if !reflect.DeepEqual(plan, want) {
		t.Fatalf("plan %+v\nwant %+v", plan, want)
	}
	// A token budget of 8: 5 alone (2×5 > 8), then 4+3 (2×4), 2+1+0 would be
	// 3×2 = 6 ≤ 8 but batch_size 3 allows three.
	plan = Plan([]int{5, 1, 4, 2, 3, 0}, 3, 8)
	want = []Batch{
		{ID: 0, Rows: []int{0}, MaxLen: 5, Tokens: 5},
		{ID: 1, Rows: []int{2, 4}, MaxLen: 4, Tokens: 7},
		{ID: 2, Rows: []int{1, 3, 5}, MaxLen: 2, Tokens: 3},
	}
	if !reflect.DeepEqual(plan, want) {
		t.Fatalf("token plan %+v\nwant %+v", plan, want)
	}
	// Over-long rows get a batch of their own; no batch size means the budget alone.
	plan = Plan([]int{100, 1, 1, 1}, 0, 10)
	if len(plan) != 2 || len(plan[0].Rows) != 1 || len(plan[1].Rows) != 3 {
		t.Fatalf("over-long %+v", plan)
	}
	if Plan(nil, 8, 0) != nil {
		t.Fatal("empty input")
	}
}

func TestPlanProperties(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	for trial := 0; trial < 50; trial++ {
		n := rng.Intn(3000)
		lengths := make([]int, n)
		for i := range lengths {
			lengths[i] = 1 + int(rng.ExpFloat64()*100)
		}
		bs, budget := 1+rng.Intn(32), 0
		if trial%2 == 1 {
			budget = 256 + rng.Intn(4096)
		}
		plan := Plan(lengths, bs, budget)
		checkPartition(t, plan, n)
		for _, b := range plan {
			if len(b.Rows) > bs || (budget > 0 && len(b.Rows) > 1 && b.Padded() > budget) {
				t.Fatalf("batch over its limits: %d rows, %d padded (bs %d, budget %d)", len(b.Rows), b.Padded(), bs, budget)
			}
		}
		if again := Plan(lengths, bs, budget); !reflect.DeepEqual(plan, again) {
			t.Fatal("plan is not deterministic")
		}
		if budget == 0 && n > 100 {
			// Padding against naive consecutive chunks of the input order.
			real, padded := Padding(plan)
			naive := 0
			for lo := 0; lo < n; lo += bs {
				m, k := 0, 0
				for _, l := range lengths[lo:min(lo+bs, n)] {
					m = max(m, l)
					k++
				}
				naive += m * k
			}
			if bs > 1 && !(padded-real < (naive-real)/4) {
				t.Errorf("n %d bs %d: padding %d, naive %d", n, bs, padded-real, naive-real)
			}
		}
	}
}
