package dataset

import (
	"fmt"
	"math"
	"math/bits"

	"github.com/herdml/herd/configs"
)

// Plan orders a training set into optimizer steps for data parallelism. The
// unit is the optimizer step's global batch of G examples (sequences, when
// packed). Epoch e visits the N examples in a permutation seeded by
// (Seed, e); global step k of the epoch takes permutation positions
// [k·G, (k+1)·G), the last step of an epoch taking the N mod G left over
// (a smaller batch, not dropped and not filled from the next epoch).
//
// Each worker (rank r of world W) takes a contiguous slice of every global
// batch; the slices are disjoint, their union is the whole batch, and their
// sizes differ by at most one (a worker gets none when the batch is smaller
// than the world). Because positions count global steps, never per-worker
// steps, the world may change between any two steps (a worker lost or
// added): the rest of the epoch is re-sharded over the new world with no
// example repeated or skipped. G itself must stay the same for the whole run.
//
// All methods are pure functions of the Plan and their arguments: every
// worker and the coordinator compute the same batches without talking. They
// panic when the plan is invalid (see Validate) or an argument is out of
// range, like an out-of-range slice index.
type Plan struct {
	// N is the number of examples (sequences) in the training set, >= 0.
	N int `json:"n"`
	// G is the global batch size: training.global_batch_size, or
	// micro_batch_size × grad_accum × workers when that is 0, fixed when the
	// run starts. >= 1.
	G int `json:"g"`
	// Seed is training.seed.
	Seed uint64 `json:"seed"`
}

// GlobalBatchSize is the G of a run: training.global_batch_size, or
// micro_batch_size × grad_accum × workers when that is 0. Compute it once,
// with the world size the run starts with, and keep it for the whole run.
func GlobalBatchSize(t configs.Training, workers int) int {
	if t.GlobalBatchSize > 0 {
		return t.GlobalBatchSize
	}
	return t.MicroBatchSize * t.GradAccum * max(workers, 1)
}

// Validate returns an error when N < 0 or G < 1.
func (p Plan) Validate() error {
	if p.N < 0 {
		return fmt.Errorf("dataset: plan: N must be >= 0, got %d", p.N)
	}
	if p.G < 1 {
		return fmt.Errorf("dataset: plan: global batch size must be >= 1, got %d", p.G)
	}
	return nil
}

func (p Plan) mustValid() {
	if err := p.Validate(); err != nil {
		panic(err)
	}
}

// StepsPerEpoch is ceil(N/G): the optimizer steps of one epoch.
func (p Plan) StepsPerEpoch() int {
	p.mustValid()
	return (p.N + p.G - 1) / p.G
}

// TotalSteps is the optimizer steps of a run of the given number of epochs
// (fractions allowed: rounded up to a whole step), at least 1 when N > 0.
func (p Plan) TotalSteps(epochs float64) int {
	spe := p.StepsPerEpoch()
	if spe == 0 || !(epochs > 0) {
		return 0
	}
	return max(1, int(math.Ceil(epochs*float64(spe)-1e-9)))
}

// BatchSize is the size of global batch step of any epoch: G, or N mod G for
// the last step of an epoch when G does not divide N.
func (p Plan) BatchSize(step int) int {
	p.checkStep(step)
	return min(p.G, p.N-step*p.G)
}

func (p Plan) checkStep(step int) {
	if spe := p.StepsPerEpoch(); step < 0 || step >= spe {
		panic(fmt.Sprintf("dataset: plan: step %d out of range [0, %d)", step, spe))
	}
}

// Permutation returns the example order of an epoch.
func (p Plan) Permutation(epoch int) Permutation {
	p.mustValid()
	if epoch < 0 {
		panic(fmt.Sprintf("dataset: plan: negative epoch %d", epoch))
	}
	return NewPermutation(p.N, mix64(p.Seed^0x6865_7264_706c_616e)^mix64(uint64(epoch)+0x9e37_79b9_7f4a_7c15))
}

// Global returns the example indices of global batch step of epoch, in
// order: Permutation(epoch) at positions [step·G, step·G+BatchSize(step)).
func (p Plan) Global(epoch, step int) []int {
	p.checkStep(step)
	return p.Permutation(epoch).Range(step*p.G, step*p.G+p.BatchSize(step))
}

// Shard returns worker rank's part of global batch step of epoch in a world
// of the given size: the contiguous slice ShardBounds(BatchSize(step), rank,
// world) of Global(epoch, step).
func (p Plan) Shard(epoch, step, rank, world int) []int {
	lo, hi := ShardBounds(p.BatchSize(step), rank, world)
	base := step * p.G
	return p.Permutation(epoch).Range(base+lo, base+hi)
}

// ShardBounds splits n items into world contiguous near-equal slices and
// returns rank's: [rank·n/world, (rank+1)·n/world). Sizes differ by at most
// one; a rank gets an empty slice when n < world.
func ShardBounds(n, rank, world int) (lo, hi int) {
	if world < 1 || rank < 0 || rank >= world || n < 0 {
		panic(fmt.Sprintf("dataset: shard: rank %d of world %d (n %d) out of range", rank, world, n))
	}
	return rank * n / world, (rank + 1) * n / world
}

// MicroBatches splits a worker's part of a global batch into consecutive
// micro-batches of size examples, the last one smaller when size does not
// divide it. An empty part has no micro-batch.
func MicroBatches(part []int, size int) [][]int {
	if size < 1 {
		panic(fmt.Sprintf("dataset: micro-batch size must be >= 1, got %d", size))
	}
	out := make([][]int, 0, (len(part)+size-1)/size)
	for lo := 0; lo < len(part); lo += size {
		out = append(out, part[lo:min(lo+size, len(part)):min(lo+size, len(part))])
	}
	return out
}

// Position is where training is in the data: the next optimizer step to take
// is step Step of epoch Epoch. It is what a checkpoint stores to resume the
// data order exactly, whatever the world size after the restart.
type Position struct {
	Epoch int `json:"epoch"`
	Step  int `json:"step"`
}

// Next is the position after pos: the next step, or step 0 of the next epoch
// after an epoch's last step.
func (pos Position) Next(p Plan) Position {
	if pos.Step+1 >= p.StepsPerEpoch() {
		return Position{Epoch: pos.Epoch + 1}
	}
	return Position{Epoch: pos.Epoch, Step: pos.Step + 1}
}

// At is the position after steps optimizer steps from the start. It panics
// on an empty plan (no step exists).
func (p Plan) At(steps int) Position {
	spe := p.StepsPerEpoch()
	if spe == 0 || steps < 0 {
		panic(fmt.Sprintf("dataset: plan: no position %d in a plan of %d steps per epoch", steps, spe))
	}
	return Position{Epoch: steps / spe, Step: steps % spe}
}

// Steps is the number of optimizer steps taken before pos: the inverse of At.
func (p Plan) Steps(pos Position) int {
	return pos.Epoch*p.StepsPerEpoch() + pos.Step
}

// Permutation is a pseudo-random permutation of [0, N): a Feistel network on
// the smallest even power of two holding N, restricted to [0, N) by cycle
// walking. At costs O(1) (a few hash evaluations on average) and no memory,
// so a permutation of millions of examples is never materialised.
type Permutation struct {
	n    uint64
	half uint // bits per Feistel half
	keys [feistelRounds]uint64
}

const feistelRounds = 8

// NewPermutation returns the permutation of [0, n) of a seed.
func NewPermutation(n int, seed uint64) Permutation {
	if n < 0 {
		panic(fmt.Sprintf("dataset: permutation of negative size %d", n))
	}
	q := Permutation{n: uint64(n)}
	if n > 1 {
		b := uint(bits.Len64(uint64(n - 1)))
		q.half = max(1, (b+1)/2)
	}
	s := seed
	for i := range q.keys {
		s += 0x9e37_79b9_7f4a_7c15
		q.keys[i] = mix64(s)
	}
	return q
}

// Len is n.
func (q Permutation) Len() int { return int(q.n) }

// At returns the element at position i in [0, n).
func (q Permutation) At(i int) int {
	if i < 0 || uint64(i) >= q.n {
		panic(fmt.Sprintf("dataset: permutation index %d out of range [0, %d)", i, q.n))
	}
	if q.n == 1 {
		return 0
	}
	x := uint64(i)
	for {
		x = q.feistel(x)
		if x < q.n {
			return int(x)
		}
	}
}

// Range returns the elements at positions [lo, hi).
func (q Permutation) Range(lo, hi int) []int {
	if lo < 0 || hi < lo || uint64(hi) > q.n {
		panic(fmt.Sprintf("dataset: permutation range [%d, %d) out of [0, %d)", lo, hi, q.n))
	}
	out := make([]int, hi-lo)
	for i := range out {
		out[i] = q.At(lo + i)
	}
	return out
}

func (q Permutation) feistel(x uint64) uint64 {
	mask := uint64(1)<<q.half - 1
	l, r := x>>q.half, x&mask
	for _, k := range q.keys {
		l, r = r, l^(mix64(r^k)&mask)
	}
	return l<<q.half | r
}

// mix64 is the splitmix64 finaliser.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58_476d_1ce4_e5b9
	x ^= x >> 27
	x *= 0x94d0_49bb_1331_11eb
	x ^= x >> 31
	return x
}
