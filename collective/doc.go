// Package collective makes N workers agree on the element-wise sum or mean
// of their flat float32 buffers over NATS (all-reduce), fast and without
// hanging when a member dies. A group of N members is formed per membership
// epoch handed out by the coordinator; Join rendezvouses the members of one
// (group, epoch), and Member.AllReduce reduces a buffer in place with
// reduce-scatter + all-gather for large buffers or a direct exchange for
// small ones, optionally compressing the wire format to bf16 or fp16.
// Results are bit-identical on every member. Every call is bounded by its
// context and Config.Timeout; members of an older epoch are refused with
// ErrStaleEpoch. The package talks to a small Transport interface: NATS in
// production (NewNATSTransport), an in-memory Hub with partition and
// message hooks in tests. It does not know what a gradient is.
//
// See docs/collective.md for the algorithm, the subject scheme and failure
// semantics.
package collective

// BusBW is an all-reduce's bus bandwidth as nccl-tests defines it: the
// algorithm bandwidth (bytes reduced per second) × 2(n−1)/n, comparable
// across group sizes and with the links' speed; 0 for a group of one.
func BusBW(algbw float64, n int) float64 {
	if n < 2 {
		return 0
	}
	return algbw * 2 * float64(n-1) / float64(n)
}
