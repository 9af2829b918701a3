package dataset

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/herdml/herd/configs"
)

func TestPermutationIsBijection(t *testing.T) {
	for n := 0; n <= 300; n++ {
		for _, seed := range []uint64{0, 1, 42, math.MaxUint64} {
			q := NewPermutation(n, seed)
			if q.Len() != n {
				t.Fatalf("n %d: Len %d", n, q.Len())
			}
			seen := make([]bool, n)
			for i := 0; i < n; i++ {
				v := q.At(i)
				if v < 0 || v >= n || seen[v] {
					t.Fatalf("n %d seed %d: At(%d) = %d repeated or out of range", n, seed, i, v)
				}
				seen[v] = true
			}
		}
	}
}

func TestPermutationLarge(t *testing.T) {
	const n = 1_000_003
	q := NewPermutation(n, 7)
	seen := make([]bool, n)
	for i := 0; i < n; i++ {
		v := q.At(i)
		if seen[v] {
			t.Fatalf("At(%d) = %d repeated", i, v)
		}
		seen[v] = true
	}
}

// Every position should hold every element about equally often over seeds.
func TestPermutationUniform(t *testing.T) {
	const n, trials = 10, 20000
	var counts [n][n]int
	for s := 0; s < trials; s++ {
		q := NewPermutation(n, uint64(s))
		for i := 0; i < n; i++ {
			counts[i][q.At(i)]++
		}
	}
	want := float64(trials) / n
	sigma := math.Sqrt(float64(trials) * (1.0 / n) * (1 - 1.0/n))
	for i := range counts {
		for v, c := range counts[i] {
			if math.Abs(float64(c)-want) > 6*sigma {
				t.Errorf("position %d holds %d %d times, want %.0f ± %.0f", i, v, c, want, 6*sigma)
			}
		}
	}
	// Adjacent positions must not be correlated: pairs (At(0), At(1)) spread
	// over all n·(n-1) ordered pairs.
	pairs := map[[2]int]int{}
	for s := 0; s < trials; s++ {
		q := NewPermutation(n, uint64(s)+1e9)
		pairs[[2]int{q.At(0), q.At(1)}]++
	}
	if len(pairs) != n*(n-1) {
		t.Errorf("saw %d of %d ordered pairs at positions 0 and 1", len(pairs), n*(n-1))
	}
}

func TestPlanEpochsDiffer(t *testing.T) {
	p := Plan{N: 100, G: 8, Seed: 42}
	seen := map[string]int{}
	for e := 0; e < 10; e++ {
		k := fmt.Sprint(p.Permutation(e).Range(0, 100))
		if prev, dup := seen[k]; dup {
			t.Fatalf("epochs %d and %d have the same order", prev, e)
		}
		seen[k] = e
	}
	q := Plan{N: 100, G: 8, Seed: 43}
	if slices.Equal(p.Global(0, 0), q.Global(0, 0)) {
		t.Error("seeds 42 and 43 give the same first batch")
	}
	if !slices.Equal(p.Global(3, 2), Plan{N: 100, G: 8, Seed: 42}.Global(3, 2)) {
		t.Error("equal plans disagree")
	}
}

// The order is part of the checkpoint contract: a resumed run must see the
// batches the first run would have seen, so the permutation must not change
// between herd versions without notice.
func TestPlanGolden(t *testing.T) {
	p := Plan{N: 10, G: 4, Seed: 42}
	got := [][]int{p.Global(0, 0), p.Global(0, 1), p.Global(0, 2), p.Global(1, 0)}
	want := [][]int{{4, 0, 3, 9}, {2, 6, 7, 8}, {5, 1}, {9, 0, 6, 2}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Global = %v, want %v", got, want)
	}
}

func TestStepsAndBatchSizes(t *testing.T) {
	cases := []struct{ n, g, steps, last int }{
		{0, 4, 0, 0}, {1, 4, 1, 1}, {4, 4, 1, 4}, {5, 4, 2, 1}, {10, 3, 4, 1}, {9, 3, 3, 3},
	}
	for _, c := range cases {
		p := Plan{N: c.n, G: c.g}
		if got := p.StepsPerEpoch(); got != c.steps {
			t.Errorf("N %d G %d: StepsPerEpoch %d, want %d", c.n, c.g, got, c.steps)
		}
		if c.steps > 0 {
			if got := p.BatchSize(c.steps - 1); got != c.last {
				t.Errorf("N %d G %d: last batch %d, want %d", c.n, c.g, got, c.last)
			}
		}
	}
	p := Plan{N: 10, G: 4}
	for _, c := range []struct {
		epochs float64
		want   int
	}{{1, 3}, {2, 6}, {0.5, 2}, {0.01, 1}, {1.0 / 3, 1}, {0, 0}} {
		if got := p.TotalSteps(c.epochs); got != c.want {
			t.Errorf("TotalSteps(%v) = %d, want %d", c.epochs, got, c.want)
		}
	}
}

func TestGlobalBatchSize(t *testing.T) {
	tr := configs.Default().Training
	tr.MicroBatchSize, tr.GradAccum = 4, 2
	if g := GlobalBatchSize(tr, 3); g != 24 {
		t.Errorf("derived G %d, want 24", g)
	}
	tr.GlobalBatchSize = 64
	if g := GlobalBatchSize(tr, 3); g != 64 {
		t.Errorf("set G %d, want 64", g)
	}
}

func TestShardBounds(t *testing.T) {
	for n := 0; n <= 40; n++ {
		for world := 1; world <= 9; world++ {
			next, lo0, hi0 := 0, n, 0
			for rank := 0; rank < world; rank++ {
				lo, hi := ShardBounds(n, rank, world)
				if lo != next || hi < lo {
					t.Fatalf("n %d world %d rank %d: [%d, %d) after %d", n, world, rank, lo, hi, next)
				}
				next = hi
				lo0, hi0 = min(lo0, hi-lo), max(hi0, hi-lo)
			}
			if next != n || hi0-lo0 > 1 {
				t.Fatalf("n %d world %d: covers %d, sizes %d..%d", n, world, next, lo0, hi0)
			}
		}
	}
}

func TestMicroBatches(t *testing.T) {
	part := []int{5, 3, 8, 1, 9, 2, 7}
	for size := 1; size <= 8; size++ {
		mbs := MicroBatches(part, size)
		var flat []int
		for i, mb := range mbs {
			if len(mb) == 0 || len(mb) > size || (i < len(mbs)-1 && len(mb) != size) {
				t.Fatalf("size %d: micro-batch %d has %d", size, i, len(mb))
			}
			flat = append(flat, mb...)
		}
		if !slices.Equal(flat, part) {
			t.Fatalf("size %d: %v", size, mbs)
		}
		// Appending to a micro-batch must not write into the next one.
		if len(mbs) > 1 {
			_ = append(mbs[0], -1)
			if mbs[1][0] == -1 {
				t.Fatal("micro-batches share capacity")
			}
		}
	}
	if got := MicroBatches(nil, 4); len(got) != 0 {
		t.Errorf("MicroBatches(nil) = %v", got)
	}
}

func TestPosition(t *testing.T) {
	p := Plan{N: 10, G: 4}
	pos := Position{}
	for s := 0; s < 10; s++ {
		if got := p.At(s); got != pos {
			t.Fatalf("At(%d) = %+v, want %+v", s, got, pos)
		}
		if got := p.Steps(pos); got != s {
			t.Fatalf("Steps(%+v) = %d, want %d", pos, got, s)
		}
		data, err := json.Marshal(pos)
		if err != nil {
			t.Fatal(err)
		}
		var back Position
		if err := json.Unmarshal(data, &back); err != nil || back != pos {
			t.Fatalf("JSON round trip of %s: %+v, %v", data, back, err)
		}
		pos = pos.Next(p)
	}
	if pos != (Position{Epoch: 3, Step: 1}) {
		t.Errorf("after 10 steps: %+v", pos)
	}
	if data, _ := json.Marshal(Position{Epoch: 2, Step: 5}); string(data) != `{"epoch":2,"step":5}` {
		t.Errorf("JSON form %s", data)
	}
}

func TestPlanPanics(t *testing.T) {
	p := Plan{N: 10, G: 4}
	for name, f := range map[string]func(){
		"G 0":        func() { Plan{N: 3}.StepsPerEpoch() },
		"negative N": func() { Plan{N: -1, G: 1}.StepsPerEpoch() },
		"step":       func() { p.Global(0, 3) },
		"rank":       func() { p.Shard(0, 0, 2, 2) },
		"world":      func() { p.Shard(0, 0, 0, 0) },
		"epoch":      func() { p.Global(-1, 0) },
		"micro":      func() { MicroBatches([]int{1}, 0) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

// runEpochs plays a run of the plan over the given number of epochs, the world
// size of each step taken from worlds (cycling), each worker computing its
// own shard; at every world change the position goes through a JSON
// checkpoint as a restarted cluster would see it. It returns, per epoch, how
// often each example was trained on, and checks each step's union.
func runEpochs(t testing.TB, p Plan, epochs int, worlds []int) [][]int {
	t.Helper()
	counts := make([][]int, epochs)
	for e := range counts {
		counts[e] = make([]int, p.N)
	}
	total := epochs * p.StepsPerEpoch()
	pos := Position{}
	world := 0
	for s := 0; s < total; s++ {
		w := worlds[s%len(worlds)]
		if w != world {
			data, err := json.Marshal(pos)
			if err != nil {
				t.Fatal(err)
			}
			pos = Position{}
			if err := json.Unmarshal(data, &pos); err != nil {
				t.Fatal(err)
			}
			world = w
		}
		var union []int
		for rank := 0; rank < world; rank++ {
			part := p.Shard(pos.Epoch, pos.Step, rank, world)
			for _, mb := range MicroBatches(part, 2) {
				union = append(union, mb...)
			}
		}
		if g := p.Global(pos.Epoch, pos.Step); !slices.Equal(union, g) {
			t.Fatalf("plan %+v worlds %v step %+v: shards %v, global batch %v", p, worlds, pos, union, g)
		}
		for _, i := range union {
			counts[pos.Epoch][i]++
		}
		pos = pos.Next(p)
	}
	if total > 0 && pos != (Position{Epoch: epochs}) {
		t.Fatalf("after %d steps at %+v", total, pos)
	}
	return counts
}

func checkOnce(t testing.TB, p Plan, worlds []int, counts [][]int) {
	t.Helper()
	for e, c := range counts {
		for i, n := range c {
			if n != 1 {
				t.Fatalf("plan %+v worlds %v: epoch %d trains example %d %d times", p, worlds, e, i, n)
			}
		}
	}
}

// The re-sharding guarantee, exhaustively over small sets: whatever the
// sequence of world sizes, every example is trained exactly once per epoch.
func TestReshardExhaustive(t *testing.T) {
	sizes := []int{1, 2, 3, 5}
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n <= 11; n++ {
		for g := 1; g <= 6; g++ {
			p := Plan{N: n, G: g, Seed: uint64(n*31 + g)}
			steps := 2 * p.StepsPerEpoch()
			var seqs [][]int
			if steps <= 6 {
				// Every sequence of world sizes over two epochs.
				seq := make([]int, max(steps, 1))
				var rec func(i int)
				rec = func(i int) {
					if i == len(seq) {
						seqs = append(seqs, slices.Clone(seq))
						return
					}
					for _, w := range sizes {
						seq[i] = w
						rec(i + 1)
					}
				}
				rec(0)
			} else {
				for k := 0; k < 300; k++ {
					seq := make([]int, steps)
					for i := range seq {
						seq[i] = sizes[rng.IntN(len(sizes))]
					}
					seqs = append(seqs, seq)
				}
			}
			for _, seq := range seqs {
				checkOnce(t, p, seq, runEpochs(t, p, 2, seq))
			}
		}
	}
}

func FuzzReshard(f *testing.F) {
	f.Add(uint16(10), uint8(4), uint64(42), []byte{1, 3, 2})
	f.Add(uint16(0), uint8(1), uint64(0), []byte{1})
	f.Add(uint16(97), uint8(16), uint64(7), []byte{8, 8, 3, 1, 17, 5})
	f.Fuzz(func(t *testing.T, n uint16, g uint8, seed uint64, worlds []byte) {
		p := Plan{N: int(n % 600), G: int(g%64) + 1, Seed: seed}
		ws := []int{1}
		if len(worlds) > 0 {
			ws = ws[:0]
			for _, w := range worlds[:min(len(worlds), 64)] {
				ws = append(ws, int(w%20)+1)
			}
		}
		checkOnce(t, p, ws, runEpochs(t, p, 2, ws))
	})
}
