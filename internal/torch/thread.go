package torch

import (
	"runtime"
	"sync"
)

// Thread runs functions on one OS thread, dedicated for its lifetime.
// libtorch keeps per-thread state that must not be spread over the many
// threads a goroutine can wander across: OpenMP's thread pool, glibc's
// malloc arena (memory grows with every new thread that allocates
// tensors), and gotch's error slot. An engine owns one Thread and runs all
// its libtorch work through it.
type Thread struct {
	work chan func()
	done chan struct{}
	once sync.Once
}

// NewThread starts the thread.
func NewThread() *Thread {
	t := &Thread{work: make(chan func()), done: make(chan struct{})}
	go func() {
		// Never unlocked: the OS thread ends with this goroutine instead of
		// returning to Go's pool with libtorch's state on it.
		runtime.LockOSThread()
		defer close(t.done)
		for f := range t.work {
			f()
		}
	}()
	return t
}

// Do runs f on the thread and waits for it.
func (t *Thread) Do(f func()) {
	finished := make(chan struct{})
	t.work <- func() {
		defer close(finished)
		f()
	}
	<-finished
}

// Close stops the thread after the work already submitted.
func (t *Thread) Close() {
	t.once.Do(func() { close(t.work) })
	<-t.done
}
