package torch

/*
#include <dlfcn.h>
#include <stddef.h>
#include <string.h>
#include <stdio.h>

// The CUDA driver API has a stable C ABI, so herd reads device names and
// memory through libcuda.so.1 directly; a machine without a driver simply
// has no devices.
typedef int (*cu_init_t)(unsigned int);
typedef int (*cu_count_t)(int *);
typedef int (*cu_get_t)(int *, int);
typedef int (*cu_name_t)(char *, int, int);
typedef int (*cu_mem_t)(size_t *, int);

static int herd_cuda_devices(int max, char names[][256], size_t *mem, char *err, int errlen) {
	void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		strncpy(err, "no CUDA driver (libcuda.so.1 not found)", errlen - 1);
		return -1;
	}
	cu_init_t init = (cu_init_t)dlsym(h, "cuInit");
	cu_count_t count = (cu_count_t)dlsym(h, "cuDeviceGetCount");
	cu_get_t get = (cu_get_t)dlsym(h, "cuDeviceGet");
	cu_name_t name = (cu_name_t)dlsym(h, "cuDeviceGetName");
	cu_mem_t total = (cu_mem_t)dlsym(h, "cuDeviceTotalMem_v2");
	if (!init || !count || !get || !name || !total) {
		strncpy(err, "libcuda.so.1 lacks the driver API", errlen - 1);
		return -1;
	}
	int rc = init(0);
	if (rc != 0) {
		snprintf(err, errlen, "cuInit failed with CUDA error %d", rc);
		return -1;
	}
	int n = 0;
	if (count(&n) != 0) {
		strncpy(err, "cuDeviceGetCount failed", errlen - 1);
		return -1;
	}
	if (n > max) n = max;
	for (int i = 0; i < n; i++) {
		int dev = 0;
		names[i][0] = 0;
		mem[i] = 0;
		if (get(&dev, i) == 0) {
			name(names[i], 255, dev);
			total(&mem[i], dev);
		}
	}
	return n;
}
*/
import "C"

import (
	"errors"
	"unsafe"
)

// GPU is one CUDA device as the driver reports it.
type GPU struct {
	Index       int    `json:"index"`
	Name        string `json:"name"`
	MemoryBytes uint64 `json:"memory_bytes"`
}

// CUDADevices lists the CUDA devices the driver sees. It needs no libtorch
// and returns an error naming the reason when there is no usable driver.
func CUDADevices() ([]GPU, error) {
	const max = 64
	var names [max][256]C.char
	var mem [max]C.size_t
	var cerr [256]C.char
	n := C.herd_cuda_devices(max, &names[0], &mem[0], &cerr[0], 256)
	if n < 0 {
		return nil, errors.New(C.GoString(&cerr[0]))
	}
	out := make([]GPU, int(n))
	for i := range out {
		out[i] = GPU{Index: i, Name: C.GoString((*C.char)(unsafe.Pointer(&names[i][0]))), MemoryBytes: uint64(mem[i])}
	}
	return out, nil
}
