//go:build !purego

package collective

// AVX2 versions of the codec's hot loops (simd_amd64.s), used when the CPU
// and OS support AVX2. Each handles n elements, n a multiple of 16.

func cpuid(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)
func xgetbv() (eax, edx uint32)

//go:noescape
func addF32X(dst, src *float32, n int)

//go:noescape
func bf16AddX(dst *float32, src *uint16, n int)

//go:noescape
func bf16SetX(dst *float32, src *uint16, n int)

//go:noescape
func bf16EncX(dst *uint16, src *float32, n int)

//go:noescape
func bf16EncKeepX(dst *uint16, src, out *float32, n int)

//go:noescape
func bf16QAddX(dst, src *float32, n int)

//go:noescape
func bf16QSetX(dst, src *float32, n int)

//go:noescape
func finishX(dst *float32, n int, d float32, mode int)

// hasAVX2: CPUID says AVX2 and the OS saves the YMM registers.
var hasAVX2 = func() bool {
	maxID, _, _, _ := cpuid(0, 0)
	if maxID < 7 {
		return false
	}
	_, _, ecx1, _ := cpuid(1, 0)
	const osxsave, avx = 1 << 27, 1 << 28
	if ecx1&osxsave == 0 || ecx1&avx == 0 {
		return false
	}
	if xcr0, _ := xgetbv(); xcr0&6 != 6 {
		return false
	}
	_, ebx7, _, _ := cpuid(7, 0)
	return ebx7&(1<<5) != 0
}()

var useSIMD = hasAVX2
