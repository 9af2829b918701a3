#!/usr/bin/python3
"""Independent PyTorch reference for bitsandbytes' NF4 quantisation
(QLoRA), written from bitsandbytes' published definition
(functional.quantize_4bit / dequantize_4bit with quant_type="nf4",
blocksize=64, and compress_statistics=True for double quantisation; the
CUDA kernels kQuantizeBlockwise, dQuantizeNF4 and dQuantize), sharing
nothing with herd's Go code. bitsandbytes itself needs CUDA, so this file
restates its semantics in plain torch:

  * the weight, flattened row-major, is cut into blocks of 64 (the last
    block is padded with zeros); absmax = max |x| per block;
  * each x * (1/absmax) (float32) gets the NF4 code whose value is nearest:
    code = number of midpoints of adjacent NF4 values (the kernel's float32
    constants) strictly below it, so a value exactly on a midpoint gets the
    lower code; NaN, from an all-zero block, gets code 0;
  * two codes per byte, the first element in the high nibble; ceil(n/2)
    bytes, an odd n padding the last low nibble with a quantised zero;
  * dequantisation: nf4[code] * absmax in float32;
  * double quantisation: offset = mean(absmax), absmax - offset quantised
    blockwise (256) to 8 bits with the dynamic map: scaled to [-1, 1] by its
    block absmax, then the nearest code, with the float32 midpoint of two
    neighbours going to the even index (bitsandbytes' binary search ends on
    an even index and moves off it only when strictly past the midpoint);
    decoding is code[q] * absmax2 + offset in float32. The mean is taken in
    float64 and rounded to float32.

usage:
  nf4_ref.py quant IN.safetensors OUT.safetensors
      IN holds float32 tensors; for each NAME, OUT gets NAME/packed (U8),
      NAME/absmax, NAME/dequant, NAME/dq_qabsmax (U8), NAME/dq_absmax2,
      NAME/dq_offset ([1]), NAME/dq_dequant; plus dynamic_map [256].
  nf4_ref.py model IN_DIR OUT_DIR DOUBLE_QUANT(0|1)
      copies a Hugging Face model directory, replacing every q/k/v/o and MLP
      projection weight by its NF4 round trip (quantise then dequantise).
"""
import math
import os
import re
import shutil
from fractions import Fraction
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from oracle_st import read_safetensors, write_safetensors  # noqa: E402


# bitsandbytes get_4bit_type("nf4")
NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
       -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
       0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
       0.7229568362236023, 1.0]
# The midpoints bitsandbytes' dQuantizeNF4 decision tree compares with, as
# its CUDA kernel writes them: float literals ("0.1202552504837513f"),
# which the compiler rounds once, from the decimal, to float32. Rounding
# through a Python float (double) first lands one float32 ulp away for four
# of them (bitsandbytes' own torch fallback for CPUs does that), so they are
# rounded exactly here.
NF4_MIDS = ["-0.8480964004993439", "-0.6106329262256622", "-0.4599952697753906", "-0.33967943489551544",
            "-0.23460740596055984", "-0.13791173323988914", "-0.045525018125772476", "0.03979014977812767",
            "0.1202552504837513", "0.2035212516784668", "0.2920137718319893", "0.3893125355243683",
            "0.5016634166240692", "0.6427869200706482", "0.8614784181118011"]


def float32_of_decimal(s):
    """The float32 nearest to the decimal s (ties to even), rounded once."""
    exact = Fraction(s)
    first = torch.tensor([float(exact)], dtype=torch.float32)
    cands = [torch.nextafter(first, torch.tensor([-2.0])), first, torch.nextafter(first, torch.tensor([2.0]))]

    def key(c):
        bits = c.view(torch.int32).item()
        return (abs(Fraction(c.item()) - exact), bits & 1)

    return min(cands, key=key).item()


BLOCK = 64
BLOCK2 = 256


def create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):
    """bitsandbytes.functional.create_dynamic_map, verbatim in substance."""
    data = []
    non_sign_bits = total_bits - (1 if signed else 1)
    additional_items = 2 ** (non_sign_bits - max_exponent_bits) - 1
    for i in range(max_exponent_bits):
        fraction_items = int(2 ** (i + non_sign_bits - max_exponent_bits) + 1 if signed
                             else 2 ** (i + non_sign_bits - max_exponent_bits + 1) + 1)
        boundaries = torch.linspace(0.1, 1, fraction_items)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    if additional_items > 0:
        boundaries = torch.linspace(0.1, 1, additional_items + 1)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    data.append(0)
    data.append(1.0)
    assert len(data) == 2 ** total_bits
    data += [0] * (256 - len(data))
    data.sort()
    return torch.tensor(data, dtype=torch.float32)


def blocks_of(x, size):
    """x (1-D float32) zero-padded to whole blocks, as [blocks, size]."""
    n = x.numel()
    nb = (n + size - 1) // size
    p = torch.zeros(nb * size, dtype=torch.float32)
    p[:n] = x
    return p.view(nb, size)


def scale_blocks(xb):
    absmax = xb.abs().max(dim=1).values
    inv = torch.ones_like(absmax) / absmax  # +inf for an all-zero block
    return absmax, xb * inv[:, None]  # 0 * inf = nan


def quantize_nf4(w):
    x = w.reshape(-1).to(torch.float32)
    n = x.numel()
    absmax, scaled = scale_blocks(blocks_of(x, BLOCK))
    mids = torch.tensor([float32_of_decimal(m) for m in NF4_MIDS], dtype=torch.float32)
    codes = (scaled.unsqueeze(-1) > mids).sum(-1).reshape(-1)  # nan compares false: code 0
    codes = codes[: 2 * ((n + 1) // 2)].to(torch.uint8)
    packed = (codes[0::2] << 4) | codes[1::2]
    return packed, absmax


def dequantize_nf4(packed, absmax, shape):
    n = math.prod(shape)
    codes = torch.stack([packed >> 4, packed & 15], dim=1).reshape(-1)[:n].long()
    vals = torch.tensor(NF4, dtype=torch.float32)[codes]
    scale = absmax.to(torch.float32).repeat_interleave(BLOCK)[:n]
    return (vals * scale).reshape(shape)


def quantize_dynamic(a, code):
    """Blockwise (256) 8-bit quantisation of a with the dynamic map."""
    n = a.numel()
    absmax2, scaled = scale_blocks(blocks_of(a, BLOCK2))
    mids = (code[:-1] + code[1:]) * 0.5  # float32, as (upper + val) * 0.5f
    s = scaled.unsqueeze(-1)
    even = (torch.arange(255) % 2) == 0
    idx = torch.where(even, s > mids, s >= mids).sum(-1).reshape(-1)[:n]
    return idx.to(torch.uint8), absmax2


def double_quant(absmax, code):
    offset = absmax.double().mean().to(torch.float32)
    q, absmax2 = quantize_dynamic(absmax - offset, code)
    return q, absmax2, offset


def undouble_quant(q, absmax2, offset, code):
    nb = q.numel()
    v = code[q.long()] * absmax2.repeat_interleave(BLOCK2)[:nb]
    return v + offset


def round_trip(w, dq, code):
    packed, absmax = quantize_nf4(w)
    if dq:
        q, absmax2, offset = double_quant(absmax, code)
        absmax = undouble_quant(q, absmax2, offset, code)
    return dequantize_nf4(packed, absmax, list(w.shape))


def main_quant(inp, out):
    code = create_dynamic_map()
    res = {"dynamic_map": code}
    for name, w in read_safetensors(inp).items():
        shape = list(w.shape)
        packed, absmax = quantize_nf4(w)
        res[name + "/packed"] = packed
        res[name + "/absmax"] = absmax
        res[name + "/dequant"] = dequantize_nf4(packed, absmax, shape)
        q, absmax2, offset = double_quant(absmax, code)
        res[name + "/dq_qabsmax"] = q
        res[name + "/dq_absmax2"] = absmax2
        res[name + "/dq_offset"] = offset.reshape(1)
        res[name + "/dq_dequant"] = dequantize_nf4(packed, undouble_quant(q, absmax2, offset, code), shape)
    write_safetensors(out, res)


PROJ = re.compile(r"^model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)\.weight$")


def main_model(src, dst, dq):
    code = create_dynamic_map()
    os.makedirs(dst, exist_ok=True)
    shutil.copy(os.path.join(src, "config.json"), os.path.join(dst, "config.json"))
    tensors = read_safetensors(os.path.join(src, "model.safetensors"))
    for name, t in tensors.items():
        if PROJ.match(name):
            tensors[name] = round_trip(t.to(torch.float32), dq, code).to(t.dtype)
    write_safetensors(os.path.join(dst, "model.safetensors"), tensors, {"format": "pt"})


if __name__ == "__main__":
    torch.set_num_threads(1)
    if len(sys.argv) == 4 and sys.argv[1] == "quant":
        main_quant(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 5 and sys.argv[1] == "model":
        main_model(sys.argv[2], sys.argv[3], sys.argv[4] == "1")
    else:
        sys.exit(__doc__)
