package collective

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// JoinAll joins len(ts) members of group at epoch concurrently, member r
// on ts[r], and returns them in rank order. On any error it closes the
// members that joined and returns every error, joined. It is meant for
// tests and in-process benchmarks; real workers each call Join.
func JoinAll(ctx context.Context, ts []Transport, group string, epoch uint64, cfg Config) ([]*Member, error) {
	ms := make([]*Member, len(ts))
	errs := make([]error, len(ts))
	var wg sync.WaitGroup
	for r, t := range ts {
		wg.Go(func() {
			ms[r], errs[r] = Join(ctx, t, group, epoch, r, len(ts), cfg)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, m := range ms {
			if m != nil {
				_ = m.Close()
			}
		}
		return nil, fmt.Errorf("collective: join all: %w", err)
	}
	return ms, nil
}

// AllReduceAll runs AllReduce concurrently on every member, member r on
// bufs[r], and returns each member's error (nil entries on success).
func AllReduceAll(ctx context.Context, ms []*Member, bufs [][]float32, op Op) []error {
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for r, m := range ms {
		wg.Go(func() { errs[r] = m.AllReduce(ctx, bufs[r], op) })
	}
	wg.Wait()
	return errs
}

// CloseAll closes every non-nil member.
func CloseAll(ms []*Member) {
	for _, m := range ms {
		if m != nil {
			_ = m.Close()
		}
	}
}
