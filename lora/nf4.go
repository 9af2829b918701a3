package lora

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
)

// QLoRA's block sizes: one absmax per NF4Block weights and, with double
// quantisation, one fp32 scale per NF4Block2 quantised absmax.
const (
	NF4Block  = 64
	NF4Block2 = 256
)

// nf4Code is the 4-bit NormalFloat code book of QLoRA (Dettmers et al.
// 2023), bitsandbytes' get_4bit_type("nf4"): quantiles of N(0, 1) scaled
// to [-1, 1], with an exact zero.
var nf4Code = [16]float32{
	-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
	-0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
	0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
	0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
}

// NF4Code returns the 16 NF4 values, code 0 to 15.
func NF4Code() [16]float32 { return nf4Code }

// dynamicMap is bitsandbytes' 8-bit dynamic code book
// (functional.create_dynamic_map(signed=True)), which double quantisation
// encodes the absmax with: sorted, index 127 is 0 and index 255 is 1. The
// values are those create_dynamic_map produces with torch 1.13 on x86
// (its float32 torch.linspace rounds differently from exact arithmetic in
// about a quarter of the entries); the table travels with the quantised
// weight, so quantisation and dequantisation always agree.
var dynamicMap = [256]float32{
	-0.99296874, -0.9789062, -0.96484375, -0.9507812, -0.9367187, -0.92265624, -0.9085938, -0.89453125,
	-0.8804687, -0.8664062, -0.85234374, -0.8382812, -0.82421875, -0.8101562, -0.7960937, -0.78203124,
	-0.7679688, -0.75390625, -0.7398438, -0.72578126, -0.7117188, -0.6976563, -0.68359375, -0.6695313,
	-0.65546876, -0.64140624, -0.6273438, -0.61328125, -0.5992187, -0.58515626, -0.5710938, -0.5570313,
	-0.54296875, -0.5289062, -0.51484376, -0.50078124, -0.48671877, -0.47265625, -0.45859373, -0.44453126,
	-0.43046874, -0.4164062, -0.40234375, -0.38828123, -0.37421876, -0.36015624, -0.3460937, -0.33203125,
	-0.31796873, -0.30390626, -0.28984374, -0.27578127, -0.26171875, -0.24765626, -0.23359376, -0.21953125,
	-0.20546874, -0.19140625, -0.17734374, -0.16328125, -0.14921875, -0.13515624, -0.12109375, -0.107031256,
	-0.09859375, -0.095781244, -0.092968754, -0.09015625, -0.08734375, -0.08453125, -0.08171874, -0.07890625,
	-0.07609375, -0.07328125, -0.070468746, -0.067656256, -0.06484375, -0.062031247, -0.059218753, -0.05640625,
	-0.05359375, -0.05078125, -0.04796875, -0.04515625, -0.042343747, -0.03953125, -0.036718752, -0.033906247,
	-0.03109375, -0.028281247, -0.02546875, -0.02265625, -0.01984375, -0.01703125, -0.01421875, -0.01140625,
	-0.00971875, -0.009156249, -0.00859375, -0.00803125, -0.00746875, -0.00690625, -0.00634375, -0.00578125,
	-0.0052187503, -0.0046562497, -0.00409375, -0.0035312497, -0.00296875, -0.00240625, -0.00184375, -0.0012812499,
	-0.0009437501, -0.00083125, -0.00071875006, -0.0006062501, -0.00049375003, -0.00038125002, -0.00026875004, -0.00015625001,
	-8.875e-05, -6.625e-05, -4.375e-05, -2.1249998e-05, -7.75e-06, -3.2500002e-06, -5.5000004e-07, 0.0,
	5.5000004e-07, 3.2500002e-06, 7.75e-06, 2.1249998e-05, 4.375e-05, 6.625e-05, 8.875e-05, 0.00015625001,
	0.00026875004, 0.00038125002, 0.00049375003, 0.0006062501, 0.00071875006, 0.00083125, 0.0009437501, 0.0012812499,
	0.00184375, 0.00240625, 0.00296875, 0.0035312497, 0.00409375, 0.0046562497, 0.0052187503, 0.00578125,
	0.00634375, 0.00690625, 0.00746875, 0.00803125, 0.00859375, 0.009156249, 0.00971875, 0.01140625,
	0.01421875, 0.01703125, 0.01984375, 0.02265625, 0.02546875, 0.028281247, 0.03109375, 0.033906247,
	0.036718752, 0.03953125, 0.042343747, 0.04515625, 0.04796875, 0.05078125, 0.05359375, 0.05640625,
	0.059218753, 0.062031247, 0.06484375, 0.067656256, 0.070468746, 0.07328125, 0.07609375, 0.07890625,
	0.08171874, 0.08453125, 0.08734375, 0.09015625, 0.092968754, 0.095781244, 0.09859375, 0.107031256,
	0.12109375, 0.13515624, 0.14921875, 0.16328125, 0.17734374, 0.19140625, 0.20546874, 0.21953125,
	0.23359376, 0.24765626, 0.26171875, 0.27578127, 0.28984374, 0.30390626, 0.31796873, 0.33203125,
	0.3460937, 0.36015624, 0.37421876, 0.38828123, 0.40234375, 0.4164062, 0.43046874, 0.44453126,
	0.45859373, 0.47265625, 0.48671877, 0.50078124, 0.51484376, 0.5289062, 0.54296875, 0.5570313,
	0.5710938, 0.58515626, 0.5992187, 0.61328125, 0.6273438, 0.64140624, 0.65546876, 0.6695313,
	0.68359375, 0.6976563, 0.7117188, 0.72578126, 0.7398438, 0.75390625, 0.7679688, 0.78203124,
	0.7960937, 0.8101562, 0.82421875, 0.8382812, 0.85234374, 0.8664062, 0.8804687, 0.89453125,
	0.9085938, 0.92265624, 0.9367187, 0.9507812, 0.96484375, 0.9789062, 0.99296874, 1.0,
}

// DynamicMap returns the 256-entry code book of double-quantised absmax.
func DynamicMap() [256]float32 { return dynamicMap }

// nf4Index maps x in [-1, 1] to the nearest NF4 code exactly as
// bitsandbytes' dQuantizeNF4 does (the reference nf4IndexFast, which
// quantisation uses, is tested against): a decision tree over the midpoints of
// adjacent code values (as float32), taking the upper code only when x is
// strictly above the midpoint, so a value exactly on a midpoint gets the
// lower code. NaN (0 * Inf, from an all-zero block) gets code 0.
func nf4Index(x float32) byte {
	if x > 0.03979014977812767 {
		if x > 0.3893125355243683 {
			if x > 0.6427869200706482 {
				if x > 0.8614784181118011 {
					return 0b1111
				}
				return 0b1110
			}
			if x > 0.5016634166240692 {
				return 0b1101
			}
			return 0b1100
		}
		if x > 0.2035212516784668 {
			if x > 0.2920137718319893 {
				return 0b1011
			}
			return 0b1010
		}
		if x > 0.1202552504837513 {
			return 0b1001
		}
		return 0b1000
	}
	if x > -0.33967943489551544 {
		if x > -0.13791173323988914 {
			if x > -0.045525018125772476 {
				return 0b0111
			}
			return 0b0110
		}
		if x > -0.23460740596055984 {
			return 0b0101
		}
		return 0b0100
	}
	if x > -0.6106329262256622 {
		if x > -0.4599952697753906 {
			return 0b0011
		}
		return 0b0010
	}
	if x > -0.8480964004993439 {
		return 0b0001
	}
	return 0b0000
}

// nf4Thresholds are the midpoints nf4Index compares with, ascending, then
// +Inf.
var nf4Thresholds = [16]float32{-0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
	-0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
	0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
	0.5016634166240692, 0.6427869200706482, 0.8614784181118011, float32(math.Inf(1))}

// nf4Buckets cut [-1, 1] into intervals narrower than the smallest gap
// between two thresholds, so that each holds at most one.
const nf4Buckets = 64

// nf4Base[k] is the number of thresholds whose bucket is below k.
var nf4Base = func() (b [nf4Buckets + 1]byte) {
	for k := range b {
		for _, t := range nf4Thresholds[:15] {
			if nf4Bucket(t) < k {
				b[k]++
			}
		}
	}
	return b
}()

// nf4Bucket is a non-decreasing function of x (IEEE rounding is monotonic
// and so are the clamps), with NaN in bucket 0.
func nf4Bucket(x float32) int {
	f := (x + 1) * (nf4Buckets / 2)
	if !(f > 0) {
		return 0
	}
	if f > nf4Buckets {
		f = nf4Buckets
	}
	return int(f)
}

// nf4IndexFast is nf4Index with one comparison: a value whose bucket is
// above a threshold's is above the threshold, one whose bucket is below is
// not, and a bucket holds at most one threshold, which is then compared.
func nf4IndexFast(x float32) byte {
	c := nf4Base[nf4Bucket(x)]
	if x > nf4Thresholds[c] {
		c++
	}
	return c
}

// dynamicIndex maps x in [-1, 1] to a dynamicMap index exactly as
// bitsandbytes' dQuantize<0> does: a 7-step binary search, then the nearer
// of the two neighbours by a float32 midpoint (ties go to the even index
// the search ended on). NaN gets index 0.
func dynamicIndex(x float32) byte {
	pivot, upperPivot, lowerPivot := 127, 255, 0
	lower, upper := float32(-1), float32(1)
	val := dynamicMap[pivot]
	for i := 64; i > 0; i >>= 1 {
		if x > val {
			lowerPivot, lower = pivot, val
			pivot += i
		} else {
			upperPivot, upper = pivot, val
			pivot -= i
		}
		val = dynamicMap[pivot]
	}
	if upperPivot == 255 {
		upper = dynamicMap[255]
	}
	if lowerPivot == 0 {
		lower = dynamicMap[0]
	}
	if x > val {
		if x > float32(upper+val)*0.5 {
			return byte(upperPivot)
		}
		return byte(pivot)
	}
	if x < float32(lower+val)*0.5 {
		return byte(lowerPivot)
	}
	return byte(pivot)
}

// NF4Weights is a weight quantised to NF4 on the host, in bitsandbytes'
// layout (quantize_4bit with blocksize 64, quant_type "nf4"). The weight,
// flattened row-major, is cut into blocks of NF4Block elements, the last
// one possibly partial; element i is nf4[code_i] * absmax[i/NF4Block].
type NF4Weights struct {
	Shape []int64
	// Packed holds two codes per byte, the first element in the high
	// nibble: ceil(n/2) bytes. With an odd n the last low nibble encodes
	// a padding zero, as bitsandbytes writes it.
	Packed []byte
	// Absmax is each block's max |w| (float32). Nil with double
	// quantisation, which keeps QAbsmax, Absmax2 and Offset instead.
	Absmax []float32
	// QAbsmax holds one 8-bit dynamicMap index per block, encoding
	// absmax - Offset scaled by its block's Absmax2.
	QAbsmax []byte
	// Absmax2 is the max |absmax - Offset| of each run of NF4Block2 blocks.
	Absmax2 []float32
	// Offset is the mean absmax.
	Offset float32
}

// DoubleQuant reports whether the absmax are quantised.
func (q *NF4Weights) DoubleQuant() bool { return q.QAbsmax != nil }

// Len is the number of weights.
func (q *NF4Weights) Len() int {
	n := 1
	for _, d := range q.Shape {
		n *= int(d)
	}
	return n
}

// Bytes is the storage the quantised weight needs: packed codes, absmax
// and, with double quantisation, the absmax scales and the offset. The
// shared 1 KiB dynamic code book is not counted.
func (q *NF4Weights) Bytes() int64 {
	b := int64(len(q.Packed)) + 4*int64(len(q.Absmax))
	if q.DoubleQuant() {
		b += int64(len(q.QAbsmax)) + 4*int64(len(q.Absmax2)) + 4
	}
	return b
}

// BlockAbsmax returns the float32 absmax each block decodes with:
// Absmax, or dynamicMap[q] * Absmax2 + Offset in float32 as bitsandbytes'
// dequantize_blockwise followed by "absmax += offset" computes it.
func (q *NF4Weights) BlockAbsmax() []float32 {
	if !q.DoubleQuant() {
		return q.Absmax
	}
	out := make([]float32, len(q.QAbsmax))
	for i, c := range q.QAbsmax {
		out[i] = float32(dynamicMap[c]*q.Absmax2[i/NF4Block2]) + q.Offset
	}
	return out
}

// Dequantize decodes the weight to float32 (row-major, Len values), the
// reference for what libtorch computes on the device.
func (q *NF4Weights) Dequantize() []float32 {
	n := q.Len()
	absmax := q.BlockAbsmax()
	out := make([]float32, n)
	for i := range out {
		b := q.Packed[i/2]
		if i%2 == 0 {
			b >>= 4
		}
		out[i] = nf4Code[b&15] * absmax[i/NF4Block]
	}
	return out
}

// ErrNonFinite is returned, wrapped, for a weight holding NaN or ±Inf,
// which has no absmax to scale by.
var ErrNonFinite = errors.New("weight is not finite")

// QuantizeNF4 quantises w (row-major, of the given shape) to NF4 as
// bitsandbytes' quantize_4bit(w, blocksize=64, quant_type="nf4",
// compress_statistics=doubleQuant) does on CUDA, bit for bit: absmax is
// max |w| per block, each w * (1/absmax) (float32) goes to the nearest
// code (ties down), and an all-zero block encodes every element as code 0
// with absmax 0. With doubleQuant the absmax are then quantised: offset =
// their mean (bitsandbytes takes torch's float32 mean on the device; herd
// sums in float64, which can differ in the last bit of the offset), and
// absmax - offset is quantised to 8 bits with the dynamic code book in
// blocks of 256, each with its fp32 absmax. Large weights are quantised on
// all CPUs.
func QuantizeNF4(w []float32, shape []int64, doubleQuant bool) (*NF4Weights, error) {
	n := int64(1)
	for _, d := range shape {
		if d <= 0 {
			return nil, fmt.Errorf("lora: nf4: invalid weight shape %v", shape)
		}
		n *= d
	}
	if len(shape) == 0 || n != int64(len(w)) {
		return nil, fmt.Errorf("lora: nf4: shape %v does not hold the %d values given", shape, len(w))
	}
	blocks := (len(w) + NF4Block - 1) / NF4Block
	q := &NF4Weights{Shape: append([]int64(nil), shape...), Packed: make([]byte, (len(w)+1)/2), Absmax: make([]float32, blocks)}
	if err := parallelBlocks(blocks, func(lo, hi int) error { return quantizeBlocks(w, q.Packed, q.Absmax, lo, hi) }); err != nil {
		return nil, err
	}
	if doubleQuant {
		q.QAbsmax, q.Absmax2, q.Offset = quantizeAbsmax(q.Absmax)
		q.Absmax = nil
	}
	return q, nil
}

// parallelBlocks runs f over [0, blocks) in chunks, on up to GOMAXPROCS
// goroutines when there is enough work, and returns the first error.
func parallelBlocks(blocks int, f func(lo, hi int) error) error {
	const chunk = 4096 // blocks: 256 Ki weights
	workers := min(runtime.GOMAXPROCS(0), (blocks+chunk-1)/chunk)
	if workers <= 1 {
		return f(0, blocks)
	}
	var (
		mu   sync.Mutex
		next int
		errs = make([]error, workers)
		wg   sync.WaitGroup
	)
	for k := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				lo := next
				next += chunk
				mu.Unlock()
				if lo >= blocks {
					return
				}
				if err := f(lo, min(lo+chunk, blocks)); err != nil {
					errs[k] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// quantizeBlocks quantises blocks [lo, hi) of w into packed and absmax.
func quantizeBlocks(w []float32, packed []byte, absmax []float32, lo, hi int) error {
	for b := lo; b < hi; b++ {
		start := b * NF4Block
		x := w[start:min(start+NF4Block, len(w))]
		var m uint32 // max |x| as bits: for non-negative floats the order is the integers'
		for _, v := range x {
			m = max(m, math.Float32bits(v)&^(1<<31))
		}
		if m >= 0x7f800000 {
			for i, v := range x {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					return fmt.Errorf("lora: nf4: %w: element %d is %v", ErrNonFinite, start+i, v)
				}
			}
		}
		absmax[b] = math.Float32frombits(m)
		inv := 1 / absmax[b] // +Inf for an all-zero block: 0 * Inf is NaN, code 0
		out := packed[start/2:]
		j := 0
		for ; j+1 < len(x); j += 2 {
			out[j/2] = nf4IndexFast(x[j]*inv)<<4 | nf4IndexFast(x[j+1]*inv)
		}
		if j < len(x) { // odd tail: pad with a quantised zero
			out[j/2] = nf4IndexFast(x[j]*inv)<<4 | nf4IndexFast(0*inv)
		}
	}
	return nil
}

// quantizeAbsmax is bitsandbytes' double quantisation of the block absmax:
// offset = mean, then blockwise 8-bit dynamic quantisation of
// absmax - offset in blocks of NF4Block2.
func quantizeAbsmax(absmax []float32) (codes []byte, scales []float32, offset float32) {
	var sum float64
	for _, a := range absmax {
		sum += float64(a)
	}
	offset = float32(sum / float64(len(absmax)))
	codes = make([]byte, len(absmax))
	scales = make([]float32, (len(absmax)+NF4Block2-1)/NF4Block2)
	centred := make([]float32, NF4Block2)
	for b := range scales {
		start := b * NF4Block2
		c := centred[:min(NF4Block2, len(absmax)-start)]
		var m float32
		for i := range c {
			c[i] = absmax[start+i] - offset
			if a := float32(math.Abs(float64(c[i]))); a > m {
				m = a
			}
		}
		scales[b] = m
		inv := 1 / m
		for i, v := range c {
			codes[start+i] = dynamicIndex(v * inv)
		}
	}
	return codes, scales, offset
}
