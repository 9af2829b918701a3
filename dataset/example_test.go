package dataset_test

import (
	"fmt"

	"github.com/herdml/herd/dataset"
)

// Ten sequences, a global batch of four, two workers; after the first step
// a third worker joins: the rest of the epoch is re-sharded over three, and
// every sequence is still trained once.
func ExamplePlan() {
	plan := dataset.Plan{N: 10, G: 4, Seed: 42}
	pos := dataset.Position{}
	for _, world := range []int{2, 3, 3} {
		fmt.Printf("epoch %d step %d, global %v:", pos.Epoch, pos.Step, plan.Global(pos.Epoch, pos.Step))
		for rank := 0; rank < world; rank++ {
			part := plan.Shard(pos.Epoch, pos.Step, rank, world)
			fmt.Printf(" rank %d %v", rank, dataset.MicroBatches(part, 1))
		}
		fmt.Println()
		pos = pos.Next(plan)
	}
	fmt.Printf("next: %+v\n", pos)
	// Output:
	// epoch 0 step 0, global [4 0 3 9]: rank 0 [[4] [0]] rank 1 [[3] [9]]
	// epoch 0 step 1, global [2 6 7 8]: rank 0 [[2]] rank 1 [[6]] rank 2 [[7] [8]]
	// epoch 0 step 2, global [5 1]: rank 0 [] rank 1 [[5]] rank 2 [[1]]
	// next: {Epoch:1 Step:0}
}
