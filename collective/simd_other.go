//go:build !amd64 || purego

package collective

// No vector kernels on this platform: the codec's scalar loops run.

var useSIMD = false

func addF32X(dst, src *float32, n int)                   { panic("unreachable") }
func bf16AddX(dst *float32, src *uint16, n int)          { panic("unreachable") }
func bf16SetX(dst *float32, src *uint16, n int)          { panic("unreachable") }
func bf16EncX(dst *uint16, src *float32, n int)          { panic("unreachable") }
func bf16EncKeepX(dst *uint16, src, out *float32, n int) { panic("unreachable") }
func bf16QAddX(dst, src *float32, n int)                 { panic("unreachable") }
func bf16QSetX(dst, src *float32, n int)                 { panic("unreachable") }
func finishX(dst *float32, n int, d float32, mode int)   { panic("unreachable") }
