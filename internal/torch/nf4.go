package torch

// #include <stdint.h>
// void herd_nf4_code(float *out);
// void herd_nf4_force_generic(int on);
// void herd_nf4_dequantize(void **out, void *packed, void *absmax, void *absmax2, void *code2, double offset,
//                          int64_t blocksize, int64_t blocksize2, int64_t *shape, int ndim, int dtype);
// void herd_nf4_linear(void **out, void *x, void *packed, void *absmax, void *absmax2, void *code2,
//                      double offset, int64_t blocksize, int64_t blocksize2, int64_t *shape, int ndim, void *bias);
import "C"

import (
	"fmt"
	"unsafe"

	lib "github.com/sugarme/gotch/libtch"
)

// NF4 is a weight stored as 4-bit NormalFloat codes (QLoRA), in
// bitsandbytes' layout, on one device: the tensors of a bitsandbytes
// QuantState. The weight, flattened row-major, is cut into blocks of
// BlockSize elements (the last one may be partial); element i decodes to
// nf4[code_i] * absmax[i/BlockSize] in float32. The handles are borrowed:
// whoever built the NF4 frees them.
type NF4 struct {
	// Shape is the dense weight's shape ([out, in] for a linear layer).
	Shape []int64
	// BlockSize is the number of elements sharing one absmax; even, > 0
	// (QLoRA: 64).
	BlockSize int64
	// Packed is uint8 [ceil(n/2)]: two codes per byte, the first element
	// in the high nibble. With an odd n the last low nibble is padding.
	Packed *Tensor
	// Absmax is float32 [blocks]: each block's max |w|. With double
	// quantisation (Code2 != nil) it is uint8 [blocks] instead: codes of
	// absmax - Offset in blocks of BlockSize2, decoding to
	// Code2[q] * Absmax2[block/BlockSize2] + Offset.
	Absmax *Tensor
	// Absmax2 is float32 [ceil(blocks/BlockSize2)]: the scale of each block
	// of quantised absmax. Nil without double quantisation.
	Absmax2 *Tensor
	// Code2 is the float32 [256] code book of the quantised absmax
	// (bitsandbytes' dynamic map). Nil without double quantisation.
	Code2 *Tensor
	// Offset is the mean absmax, subtracted before double quantisation.
	Offset float32
	// BlockSize2 is the number of absmax per Absmax2 entry (QLoRA: 256).
	BlockSize2 int64
}

// Nested reports whether the absmax are double-quantised.
func (q *NF4) Nested() bool { return q.Code2 != nil }

// args returns the C handles of q's tensors, nil where absent, after
// checking that every tensor it needs is there.
func (q *NF4) args() (packed, absmax, absmax2, code2 unsafe.Pointer, err error) {
	if q == nil || q.Packed == nil || q.Packed.c == nil || q.Absmax == nil || q.Absmax.c == nil {
		return nil, nil, nil, nil, &Error{Msg: "nf4: weight without packed codes or absmax (freed?)"}
	}
	if len(q.Shape) == 0 {
		return nil, nil, nil, nil, &Error{Msg: "nf4: weight without a shape"}
	}
	packed, absmax = unsafe.Pointer(q.Packed.c), unsafe.Pointer(q.Absmax.c)
	if q.Nested() {
		if q.Code2.c == nil || q.Absmax2 == nil || q.Absmax2.c == nil {
			return nil, nil, nil, nil, &Error{Msg: "nf4: double-quantised weight without its absmax scales or code book (freed?)"}
		}
		absmax2, code2 = unsafe.Pointer(q.Absmax2.c), unsafe.Pointer(q.Code2.c)
	}
	return packed, absmax, absmax2, code2, nil
}

// NF4Code returns the 16 values libherdtorch decodes NF4 codes to.
func NF4Code() ([16]float32, error) {
	var out [16]float32
	if err := mustLoad(); err != nil {
		return out, err
	}
	C.herd_nf4_code((*C.float)(unsafe.Pointer(&out[0])))
	return out, nil
}

// SetNF4Generic makes weights on the CPU decode through the ATen ops used
// on GPUs (true) instead of the CPU loop (false, the default), so that
// tests on a CPU machine cover the GPU path too. It is process-wide.
func SetNF4Generic(on bool) error {
	if err := mustLoad(); err != nil {
		return err
	}
	v := C.int(0)
	if on {
		v = 1
	}
	C.herd_nf4_force_generic(v)
	return nil
}

// NF4Dequantize returns q decoded to a dense tensor of dtype dt on q's
// device, outside autograd.
func NF4Dequantize(q *NF4, dt DType) (*Tensor, error) {
	packed, absmax, absmax2, code2, err := q.args()
	if err != nil {
		return nil, err
	}
	shape := append([]int64(nil), q.Shape...)
	return wrap(func(out *lib.Ctensor) {
		C.herd_nf4_dequantize((*unsafe.Pointer)(unsafe.Pointer(out)), packed, absmax, absmax2, code2, C.double(q.Offset),
			C.int64_t(q.BlockSize), C.int64_t(q.BlockSize2), (*C.int64_t)(unsafe.Pointer(&shape[0])), C.int(len(shape)), C.int(dt))
	})
}

// NF4Dequantize is NF4Dequantize with the result owned by the scope.
func (s *Scope) NF4Dequantize(q *NF4, dt DType) *Tensor {
	if s.err != nil {
		return nil
	}
	t, err := NF4Dequantize(q, dt)
	if err != nil {
		s.err = fmt.Errorf("nf4 dequantize: %w", err)
		return nil
	}
	return s.Own(t)
}

// NF4Linear is x @ W^T (+ bias when not nil), W the [out, in] NF4 weight
// q, dequantised to x's dtype in the forward pass and again in the
// backward pass: no dense copy of W is kept between them. Gradients flow to
// x (and to bias, if it requires them), never to W.
func (s *Scope) NF4Linear(x *Tensor, q *NF4, bias *Tensor) *Tensor {
	if !s.ok(x) {
		return nil
	}
	packed, absmax, absmax2, code2, err := q.args()
	if err != nil {
		s.err = err
		return nil
	}
	var cb unsafe.Pointer
	if bias != nil {
		if bias.c == nil {
			s.err = &Error{Msg: "nf4: freed bias"}
			return nil
		}
		cb = unsafe.Pointer(bias.c)
	}
	shape := append([]int64(nil), q.Shape...)
	return s.op(func(out *lib.Ctensor) {
		C.herd_nf4_linear((*unsafe.Pointer)(unsafe.Pointer(out)), unsafe.Pointer(x.c), packed, absmax, absmax2, code2,
			C.double(q.Offset), C.int64_t(q.BlockSize), C.int64_t(q.BlockSize2),
			(*C.int64_t)(unsafe.Pointer(&shape[0])), C.int(len(shape)), cb)
	})
}
