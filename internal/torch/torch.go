// Package torch is herd's thin handle over libtorch: it loads the
// libherdtorch.so that torchprep built for this machine, and wraps gotch's
// low-level libtch calls so that every libtorch error comes back as a Go
// error and every tensor is freed when its owner says so, not when a
// finalizer runs. It is one of the three packages allowed to import gotch.
package torch

// #include <stdlib.h>
// #include <stdint.h>
// const char *herd_torch_version(void);
// char *herd_torch_parallel_info(void);
// char *herd_torch_config(void);
// int at_get_num_threads(void);
// void at_set_num_threads(int);
// void at_manual_seed(int64_t);
// void herd_autocast_set(int device_type, int enabled, int dtype);
// void herd_backward(void *out, void *grad);
import "C"

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	lib "github.com/sugarme/gotch/libtch"
)

// LibEnv names a libherdtorch.so to load instead of the default search.
const LibEnv = "HERD_TORCH_LIB"

// ErrNotLoaded wraps every failure to load libtorch.
var ErrNotLoaded = errors.New("libtorch cannot be loaded")

var (
	loadOnce sync.Once
	loadErr  error
	loadPath string
)

// Load opens libherdtorch.so and through it libtorch. It is safe to call
// many times; only the first call does the work. Search order: $HERD_TORCH_LIB,
// libherdtorch.so beside the executable or in ../lib, then the path
// torchprep built it at.
func Load() error {
	loadOnce.Do(func() {
		var tried []string
		for _, p := range candidates() {
			if _, err := os.Stat(p); err != nil {
				tried = append(tried, p+" (missing)")
				continue
			}
			if err := lib.HerdOpen(p); err != nil {
				loadErr = fmt.Errorf("%w: %s: %v (run `make prepare` to rebuild it, or check that libtorch in %s is still installed)",
					ErrNotLoaded, p, err, lib.HerdBuild.LibDir)
				return
			}
			loadPath = p
			return
		}
		loadErr = fmt.Errorf("%w: libherdtorch.so not found (tried %s); run `make prepare` or set %s",
			ErrNotLoaded, strings.Join(tried, ", "), LibEnv)
	})
	return loadErr
}

func candidates() []string {
	if p := os.Getenv(LibEnv); p != "" {
		return []string{p}
	}
	var out []string
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Dir(exe)
		out = append(out, filepath.Join(dir, "libherdtorch.so"), filepath.Join(dir, "..", "lib", "libherdtorch.so"))
	}
	return append(out, lib.HerdBuild.LibPath)
}

// LibPath is the libherdtorch.so Load opened, or "" before it succeeds.
func LibPath() string { return loadPath }

// mustLoad turns a missing Load into an error instead of an abort in the
// trampolines.
func mustLoad() error { return Load() }

// call runs f, a libtch call, and returns the error libtorch left in its
// thread-local slot. The goroutine stays on one OS thread for both, since
// the slot belongs to the thread that made the call.
func call(f func()) error {
	if err := mustLoad(); err != nil {
		return err
	}
	runtime.LockOSThread()
	f()
	cerr := lib.GetAndResetLastErr()
	runtime.UnlockOSThread()
	if cerr == nil {
		return nil
	}
	p := (*C.char)(unsafe.Pointer(cerr))
	msg := C.GoString(p)
	C.free(unsafe.Pointer(p))
	// libtorch appends a C++ backtrace to many messages; the first line says it.
	if i := strings.Index(msg, "\nException raised from"); i > 0 {
		msg = msg[:i]
	}
	return &Error{Msg: strings.TrimSpace(msg)}
}

// Error is an error raised inside libtorch.
type Error struct{ Msg string }

func (e *Error) Error() string { return "libtorch: " + e.Msg }

// Version is the libtorch version the library was compiled against.
func Version() (string, error) {
	if err := mustLoad(); err != nil {
		return "", err
	}
	return C.GoString(C.herd_torch_version()), nil
}

// takeCString converts and frees a malloc'd C string.
func takeCString(p *C.char) string {
	defer C.free(unsafe.Pointer(p))
	return C.GoString(p)
}

// ParallelInfo is libtorch's own report of its threading and BLAS setup.
func ParallelInfo() (string, error) {
	if err := mustLoad(); err != nil {
		return "", err
	}
	return takeCString(C.herd_torch_parallel_info()), nil
}

// BuildConfig is libtorch's build configuration (at::show_config).
func BuildConfig() (string, error) {
	if err := mustLoad(); err != nil {
		return "", err
	}
	return takeCString(C.herd_torch_config()), nil
}

// NumThreads is libtorch's intra-op thread count.
func NumThreads() (int, error) {
	if err := mustLoad(); err != nil {
		return 0, err
	}
	return int(C.at_get_num_threads()), nil
}

// SetNumThreads sets libtorch's intra-op thread count (n >= 1).
func SetNumThreads(n int) error {
	if n < 1 {
		return fmt.Errorf("torch: thread count must be >= 1, got %d", n)
	}
	return call(func() { C.at_set_num_threads(C.int(n)) })
}

// CUDADeviceCount is the number of CUDA devices libtorch sees (0 on a CPU
// build).
func CUDADeviceCount() (int, error) {
	if err := mustLoad(); err != nil {
		return 0, err
	}
	return int(lib.AtcCudaDeviceCount()), nil
}

// ManualSeed seeds libtorch's default generators (torch.manual_seed).
func ManualSeed(seed int64) {
	if mustLoad() == nil {
		C.at_manual_seed(C.int64_t(seed))
	}
}

// NoGrad turns autograd off on this OS thread until the returned function
// restores it: defer torch.NoGrad()() (torch.no_grad()). The caller must
// stay on one OS thread (runtime.LockOSThread) in between.
func NoGrad() func() {
	if mustLoad() != nil {
		return func() {}
	}
	prev := lib.AtGradSetEnabled(0)
	return func() { lib.AtGradSetEnabled(prev) }
}

// Autocast runs eligible ops on dev in dtype dt (mixed precision, as
// torch.autocast does) on this OS thread until the returned function turns
// it off: defer torch.Autocast(dev, torch.BFloat16)().
func Autocast(dev Device, dt DType) (func(), error) {
	kind := C.int(0)
	if dev != CPU {
		kind = 1
	}
	if err := call(func() { C.herd_autocast_set(kind, 1, C.int(dt)) }); err != nil {
		return nil, err
	}
	return func() { _ = call(func() { C.herd_autocast_set(kind, 0, C.int(dt)) }) }, nil
}

// BackwardWith runs autograd from t with incoming gradient g (same shape),
// accumulating into the leaves' gradients: t.backward(g).
func (t *Tensor) BackwardWith(g *Tensor) error {
	return call(func() { C.herd_backward(unsafe.Pointer(t.c), unsafe.Pointer(g.c)) })
}

// Build describes the libtorch torchprep prepared this binary for.
func Build() lib.HerdBuildInfo { return lib.HerdBuild }
