//go:build !purego

#include "textflag.h"

// AVX2 kernels for the codec (see simd_amd64.go). Every kernel handles n
// elements, n a multiple of 16; the Go callers do the tail. Float adds are
// VADDPS, the same IEEE single-precision round-to-nearest addition as the
// scalar Go code, so results are bit-identical to it except for the payload
// of NaN results (which operand's payload wins depends on operand order,
// which the Go compiler picks freely too); AllReduce canonicalizes NaNs.

// func cpuid(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)
TEXT ·cpuid(SB), NOSPLIT, $0-24
	MOVL eaxArg+0(FP), AX
	MOVL ecxArg+4(FP), CX
	CPUID
	MOVL AX, eax+8(FP)
	MOVL BX, ebx+12(FP)
	MOVL CX, ecx+16(FP)
	MOVL DX, edx+20(FP)
	RET

// func xgetbv() (eax, edx uint32)
TEXT ·xgetbv(SB), NOSPLIT, $0-8
	MOVL $0, CX
	XGETBV
	MOVL AX, eax+0(FP)
	MOVL DX, edx+4(FP)
	RET

// Constants for bf16 rounding: Y10 = 0x7fff, Y11 = 1, Y12 = 0x7fffffff,
// Y13 = 0x7f800000, Y14 = 0x40 in every 32-bit lane.
#define BF16CONST \
	MOVL $0x7fff, AX \
	VMOVD AX, X10 \
	VPBROADCASTD X10, Y10 \
	MOVL $1, AX \
	VMOVD AX, X11 \
	VPBROADCASTD X11, Y11 \
	MOVL $0x7fffffff, AX \
	VMOVD AX, X12 \
	VPBROADCASTD X12, Y12 \
	MOVL $0x7f800000, AX \
	VMOVD AX, X13 \
	VPBROADCASTD X13, Y13 \
	MOVL $0x40, AX \
	VMOVD AX, X14 \
	VPBROADCASTD X14, Y14

// ROUND sets the low 16 bits of each lane of A to bf16(X) (round to
// nearest even; NaN: (b>>16)|0x40, no rounding), high bits zero. B and C
// are clobbered.
#define ROUND(X, A, B, C) \
	VPSRLD $16, X, B \
	VPAND Y11, B, A \
	VPADDD Y10, A, A \
	VPADDD X, A, A \
	VPSRLD $16, A, A \
	VPOR Y14, B, B \
	VPAND Y12, X, C \
	VPCMPGTD Y13, C, C \
	VPBLENDVB C, B, A, A

// func addF32X(dst, src *float32, n int)
TEXT ·addF32X(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $4, CX
	JZ   addf32done
addf32loop:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS (DI), Y4
	VADDPS  Y0, Y4, Y0
	VMOVUPS 32(DI), Y9
	VADDPS  Y1, Y9, Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ    $64, SI
	ADDQ    $64, DI
	DECQ    CX
	JNZ     addf32loop
addf32done:
	VZEROUPPER
	RET

// func bf16AddX(dst *float32, src *uint16, n int)
TEXT ·bf16AddX(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $4, CX
	JZ   bf16adddone
bf16addloop:
	VPMOVZXWD (SI), Y0
	VPMOVZXWD 16(SI), Y1
	VPSLLD    $16, Y0, Y0
	VPSLLD    $16, Y1, Y1
	VMOVUPS (DI), Y4
	VADDPS  Y0, Y4, Y0
	VMOVUPS 32(DI), Y9
	VADDPS  Y1, Y9, Y1
	VMOVUPS   Y0, (DI)
	VMOVUPS   Y1, 32(DI)
	ADDQ      $32, SI
	ADDQ      $64, DI
	DECQ      CX
	JNZ       bf16addloop
bf16adddone:
	VZEROUPPER
	RET

// func bf16SetX(dst *float32, src *uint16, n int)
TEXT ·bf16SetX(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $4, CX
	JZ   bf16setdone
bf16setloop:
	VPMOVZXWD (SI), Y0
	VPMOVZXWD 16(SI), Y1
	VPSLLD    $16, Y0, Y0
	VPSLLD    $16, Y1, Y1
	VMOVUPS   Y0, (DI)
	VMOVUPS   Y1, 32(DI)
	ADDQ      $32, SI
	ADDQ      $64, DI
	DECQ      CX
	JNZ       bf16setloop
bf16setdone:
	VZEROUPPER
	RET

// func bf16EncX(dst *uint16, src *float32, n int)
TEXT ·bf16EncX(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	BF16CONST
	SHRQ $4, CX
	JZ   bf16encdone
bf16encloop:
	VMOVDQU (SI), Y0
	VMOVDQU 32(SI), Y5
	ROUND(Y0, Y1, Y2, Y3)
	ROUND(Y5, Y6, Y7, Y8)
	VPACKUSDW Y6, Y1, Y1
	VPERMQ    $0xD8, Y1, Y1
	VMOVDQU   Y1, (DI)
	ADDQ      $64, SI
	ADDQ      $32, DI
	DECQ      CX
	JNZ       bf16encloop
bf16encdone:
	VZEROUPPER
	RET

// func bf16EncKeepX(dst *uint16, src, out *float32, n int)
TEXT ·bf16EncKeepX(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ out+16(FP), DX
	MOVQ n+24(FP), CX
	BF16CONST
	SHRQ $4, CX
	JZ   bf16keepdone
bf16keeploop:
	VMOVDQU (SI), Y0
	VMOVDQU 32(SI), Y5
	ROUND(Y0, Y1, Y2, Y3)
	ROUND(Y5, Y6, Y7, Y8)
	VPSLLD    $16, Y1, Y2
	VPSLLD    $16, Y6, Y7
	VMOVDQU   Y2, (DX)
	VMOVDQU   Y7, 32(DX)
	VPACKUSDW Y6, Y1, Y1
	VPERMQ    $0xD8, Y1, Y1
	VMOVDQU   Y1, (DI)
	ADDQ      $64, SI
	ADDQ      $64, DX
	ADDQ      $32, DI
	DECQ      CX
	JNZ       bf16keeploop
bf16keepdone:
	VZEROUPPER
	RET

// func bf16QAddX(dst, src *float32, n int): dst[i] += q(src[i])
TEXT ·bf16QAddX(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	BF16CONST
	SHRQ $4, CX
	JZ   bf16qadddone
bf16qaddloop:
	VMOVDQU (SI), Y0
	VMOVDQU 32(SI), Y5
	ROUND(Y0, Y1, Y2, Y3)
	ROUND(Y5, Y6, Y7, Y8)
	VPSLLD  $16, Y1, Y1
	VPSLLD  $16, Y6, Y6
	VMOVUPS (DI), Y4
	VADDPS  Y1, Y4, Y1
	VMOVUPS 32(DI), Y9
	VADDPS  Y6, Y9, Y6
	VMOVUPS Y1, (DI)
	VMOVUPS Y6, 32(DI)
	ADDQ    $64, SI
	ADDQ    $64, DI
	DECQ    CX
	JNZ     bf16qaddloop
bf16qadddone:
	VZEROUPPER
	RET

// func bf16QSetX(dst, src *float32, n int): dst[i] = q(src[i]); may alias
TEXT ·bf16QSetX(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	BF16CONST
	SHRQ $4, CX
	JZ   bf16qsetdone
bf16qsetloop:
	VMOVDQU (SI), Y0
	VMOVDQU 32(SI), Y5
	ROUND(Y0, Y1, Y2, Y3)
	ROUND(Y5, Y6, Y7, Y8)
	VPSLLD  $16, Y1, Y1
	VPSLLD  $16, Y6, Y6
	VMOVUPS Y1, (DI)
	VMOVUPS Y6, 32(DI)
	ADDQ    $64, SI
	ADDQ    $64, DI
	DECQ    CX
	JNZ     bf16qsetloop
bf16qsetdone:
	VZEROUPPER
	RET

// func finishX(dst *float32, n int, d float32, mode int)
// mode 0: dst[i] = canon(dst[i]); 1: canon(dst[i] * d); 2: canon(dst[i] / d),
// where canon replaces NaN with 0x7fc00000.
TEXT ·finishX(SB), NOSPLIT, $0-32
	MOVQ    dst+0(FP), DI
	MOVQ    n+8(FP), CX
	VBROADCASTSS d+16(FP), Y10
	MOVQ    mode+24(FP), DX
	MOVL    $0x7fc00000, AX
	VMOVD   AX, X11
	VPBROADCASTD X11, Y11
	SHRQ    $4, CX
	JZ      finishdone
finishloop:
	VMOVUPS (DI), Y0
	VMOVUPS 32(DI), Y1
	CMPQ    DX, $1
	JB      finishcanon
	JE      finishmul
	VDIVPS  Y10, Y0, Y0
	VDIVPS  Y10, Y1, Y1
	JMP     finishcanon
finishmul:
	VMULPS  Y10, Y0, Y0
	VMULPS  Y10, Y1, Y1
finishcanon:
	VCMPPS  $3, Y0, Y0, Y2
	VCMPPS  $3, Y1, Y1, Y3
	VBLENDVPS Y2, Y11, Y0, Y0
	VBLENDVPS Y3, Y11, Y1, Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ    $64, DI
	DECQ    CX
	JNZ     finishloop
finishdone:
	VZEROUPPER
	RET
