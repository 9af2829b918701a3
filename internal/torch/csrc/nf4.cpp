// NF4 (4-bit NormalFloat, QLoRA) dequantisation and the linear layer that
// runs on NF4 base weights. Quantisation happens in Go (lora/nf4.go); this
// file only turns packed codes back into dense weights, in the layout
// bitsandbytes uses:
//   - the weight, flattened row-major, is cut into blocks of `blocksize`
//     elements, each with its absmax (the last block may be partial);
//   - codes are packed two per byte, the first element in the high nibble;
//   - with double quantisation the absmax are themselves 8-bit codes of
//     (absmax - offset) in blocks of `blocksize2`, each with an fp32 scale,
//     decoded through a 256-entry code book (bitsandbytes' dynamic map).
// A weight is code_value * absmax, computed in float32 and then rounded to
// the requested dtype, as bitsandbytes' kernels do. Everything is ATen ops,
// so it runs wherever the tensors live (CPU or CUDA).
#include "torch_api.h"
#include <atomic>
#include <map>
#include <mutex>

namespace {

// The 16 NF4 values (bitsandbytes' get_4bit_type("nf4")).
const float kNF4[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

// pairTable returns, on dev, the [256, 2] float32 table mapping a packed
// byte to its two values (high nibble first). Built once per device and
// kept for the life of the process (never destroyed, so that no CUDA
// tensor is freed after the driver shut down at exit).
at::Tensor pairTable(const at::Device &dev) {
  static std::mutex mu;
  static auto *cache = new std::map<std::pair<int, int>, at::Tensor>();
  std::lock_guard<std::mutex> lock(mu);
  auto key = std::make_pair((int)dev.type(), (int)dev.index());
  auto it = cache->find(key);
  if (it != cache->end()) return it->second;
  auto host = torch::empty({256, 2}, torch::kFloat32);
  float *p = host.data_ptr<float>();
  for (int b = 0; b < 256; b++) {
    p[2 * b] = kNF4[b >> 4];
    p[2 * b + 1] = kNF4[b & 15];
  }
  auto t = host.to(dev);
  cache->emplace(key, t);
  return t;
}

// forceGeneric makes CPU tensors decode through the ATen ops used on
// other devices instead of the CPU loop (tests use it to check both).
std::atomic<bool> forceGeneric{false};

// State is one NF4 weight: the tensors of bitsandbytes' QuantState.
struct State {
  at::Tensor packed;  // uint8 [ceil(n/2)]
  at::Tensor absmax;  // float32 [blocks], or uint8 [blocks] with double quantisation
  at::Tensor absmax2; // float32 [ceil(blocks/blocksize2)], or undefined
  at::Tensor code2;   // float32 [256], or undefined
  double offset;
  int64_t blocksize, blocksize2;
  std::vector<int64_t> shape;

  bool nested() const { return code2.defined(); }
  int64_t numel() const {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }

  void check() const {
    TORCH_CHECK(blocksize > 0 && blocksize % 2 == 0, "nf4: block size must be even and > 0, got ", blocksize);
    const int64_t n = numel();
    TORCH_CHECK(n > 0, "nf4: empty weight shape");
    const int64_t blocks = (n + blocksize - 1) / blocksize;
    TORCH_CHECK(packed.defined() && packed.scalar_type() == at::kByte && packed.dim() == 1 && packed.numel() == (n + 1) / 2,
                "nf4: packed codes must be uint8 [", (n + 1) / 2, "] for ", n, " elements");
    TORCH_CHECK(absmax.defined() && absmax.dim() == 1 && absmax.numel() == blocks,
                "nf4: absmax must have one entry per block (", blocks, "), got ", absmax.numel());
    TORCH_CHECK(absmax.device() == packed.device(), "nf4: absmax and packed codes are on different devices");
    if (nested()) {
      TORCH_CHECK(blocksize2 > 0, "nf4: double-quantisation block size must be > 0, got ", blocksize2);
      TORCH_CHECK(absmax.scalar_type() == at::kByte, "nf4: double-quantised absmax must be uint8");
      const int64_t blocks2 = (blocks + blocksize2 - 1) / blocksize2;
      TORCH_CHECK(absmax2.defined() && absmax2.scalar_type() == at::kFloat && absmax2.dim() == 1 && absmax2.numel() == blocks2,
                  "nf4: absmax scales must be float32 [", blocks2, "]");
      TORCH_CHECK(code2.scalar_type() == at::kFloat && code2.dim() == 1 && code2.numel() == 256,
                  "nf4: the absmax code book must be float32 [256]");
      TORCH_CHECK(absmax2.device() == packed.device() && code2.device() == packed.device(),
                  "nf4: quantisation state tensors are on different devices");
    } else {
      TORCH_CHECK(absmax.scalar_type() == at::kFloat, "nf4: absmax must be float32");
    }
  }

  // blockScales returns the float32 absmax of every block, decoding the
  // double-quantised form as bitsandbytes' dequantize_blockwise does:
  // code2[q] * absmax2[block] + offset, in float32.
  at::Tensor blockScales() const {
    if (!nested()) return absmax;
    const int64_t blocks = absmax.numel();
    const int64_t blocks2 = absmax2.numel();
    auto v = code2.index_select(0, absmax.to(at::kLong));
    const int64_t pad = blocks2 * blocksize2 - blocks;
    if (pad > 0) v = at::constant_pad_nd(v, {0, pad}, 0);
    v = v.view({blocks2, blocksize2}).mul(absmax2.view({blocks2, 1})).view({-1});
    if (pad > 0) v = v.narrow(0, 0, blocks);
    return v.add(at::scalar_tensor(offset, v.options()));
  }

  // dense returns the dequantised weight with the given shape and dtype.
  at::Tensor dense(at::ScalarType dtype) const {
    at::Tensor w = packed.device().is_cpu() && !forceGeneric.load() ? denseCPU() : denseGeneric();
    return w.view(shape).to(dtype);
  }

  // denseCPU decodes on the CPU in one pass: nf4[code] * absmax, float32.
  at::Tensor denseCPU() const {
    const int64_t n = numel();
    const int64_t blocks = (n + blocksize - 1) / blocksize;
    auto scales = blockScales().contiguous();
    auto codes = packed.contiguous();
    auto w = torch::empty({n}, torch::kFloat32);
    const uint8_t *p = codes.data_ptr<uint8_t>();
    const float *sc = scales.data_ptr<float>();
    float *o = w.data_ptr<float>();
    const int64_t bs = blocksize;
    at::parallel_for(0, blocks, std::max<int64_t>(1, 16384 / bs), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; b++) {
        const float a = sc[b];
        const int64_t start = b * bs, end = std::min(start + bs, n);
        int64_t i = start; // even: the block size is
        for (; i + 1 < end; i += 2) {
          const uint8_t byte = p[i >> 1];
          o[i] = kNF4[byte >> 4] * a;
          o[i + 1] = kNF4[byte & 15] * a;
        }
        if (i < end) o[i] = kNF4[p[i >> 1] >> 4] * a;
      }
    });
    return w;
  }

  // denseGeneric decodes with ATen ops, wherever the tensors live: a
  // [256, 2] table maps each byte to its two values.
  at::Tensor denseGeneric() const {
    const int64_t n = numel();
    const int64_t blocks = (n + blocksize - 1) / blocksize;
    const int64_t full = blocks * blocksize;
    at::Tensor w;
    {
      auto idx = packed.to(at::kInt);
      w = pairTable(packed.device()).index_select(0, idx).view({-1});
    }
    if (w.numel() < full) w = at::constant_pad_nd(w, {0, full - w.numel()}, 0);
    w = w.view({blocks, blocksize});
    w.mul_(blockScales().view({blocks, 1}));
    w = w.view({-1});
    if (full != n) w = w.narrow(0, 0, n);
    return w;
  }
};

State makeState(tensor packed, tensor absmax, tensor absmax2, tensor code2, double offset, int64_t blocksize,
                int64_t blocksize2, int64_t *shape, int ndim) {
  State st;
  st.packed = *packed;
  st.absmax = *absmax;
  if (code2 != nullptr) {
    TORCH_CHECK(absmax2 != nullptr, "nf4: double quantisation needs the absmax scales");
    st.absmax2 = *absmax2;
    st.code2 = *code2;
  }
  st.offset = offset;
  st.blocksize = blocksize;
  st.blocksize2 = blocksize2;
  TORCH_CHECK(ndim >= 1, "nf4: weight must have at least one dimension");
  st.shape.assign(shape, shape + ndim);
  st.check();
  return st;
}

// LinearFn is y = x @ W^T + b with W dequantised from NF4 on the fly, in
// the forward pass and again in the backward pass, so no dense copy of W
// outlives either. Only x (and b, when it requires grad) get gradients:
// the quantised base weight is frozen.
class LinearFn : public torch::autograd::Function<LinearFn> {
 public:
  // Optional tensors are passed as c10::optional: autograd records an
  // undefined at::Tensor argument as an input without a device.
  static at::Tensor forward(torch::autograd::AutogradContext *ctx, at::Tensor x, at::Tensor packed,
                            at::Tensor absmax, c10::optional<at::Tensor> absmax2_, c10::optional<at::Tensor> code2_,
                            c10::optional<at::Tensor> bias_, double offset, int64_t blocksize, int64_t blocksize2,
                            std::vector<int64_t> shape) {
    at::Tensor absmax2 = absmax2_.value_or(at::Tensor()), code2 = code2_.value_or(at::Tensor());
    at::Tensor bias = bias_.value_or(at::Tensor());
    State st{packed, absmax, absmax2, code2, offset, blocksize, blocksize2, shape};
    at::Tensor y;
    {
      auto w = st.dense(x.scalar_type());
      y = at::linear(x, w, bias.defined() ? c10::optional<at::Tensor>(bias) : c10::nullopt);
    }
    ctx->save_for_backward({packed, absmax, absmax2, code2});
    ctx->saved_data["offset"] = offset;
    ctx->saved_data["blocksize"] = blocksize;
    ctx->saved_data["blocksize2"] = blocksize2;
    ctx->saved_data["shape"] = shape;
    ctx->saved_data["bias_grad"] = bias.defined() && bias.requires_grad();
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext *ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    State st{saved[0], saved[1], saved[2], saved[3], ctx->saved_data["offset"].toDouble(),
             ctx->saved_data["blocksize"].toInt(), ctx->saved_data["blocksize2"].toInt(),
             ctx->saved_data["shape"].toIntVector()};
    const at::Tensor &g = grads[0];
    at::Tensor gx;
    {
      auto w = st.dense(g.scalar_type());
      gx = at::matmul(g, w);
    }
    at::Tensor gb;
    if (ctx->saved_data["bias_grad"].toBool()) gb = g.reshape({-1, g.size(-1)}).sum(0);
    // One entry per forward argument, tensors or not.
    return {gx, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), gb,
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

} // namespace

extern "C" {

// herd_nf4_force_generic makes CPU tensors decode through the ATen ops
// used on GPUs (on != 0) or through the CPU loop (on == 0, the default).
void herd_nf4_force_generic(int on) { forceGeneric.store(on != 0); }

// herd_nf4_code copies the 16 NF4 values the library decodes with.
void herd_nf4_code(float *out) {
  for (int i = 0; i < 16; i++) out[i] = kNF4[i];
}

// herd_nf4_dequantize writes to *out the dense weight of the given shape
// and dtype decoded from packed NF4 codes and their block absmax. absmax is
// float32 [blocks]; with double quantisation (code2 != NULL) it is uint8
// [blocks] and absmax2 (float32, one per blocksize2 absmax), code2 (float32
// [256]) and offset decode it. The result does not require grad.
void herd_nf4_dequantize(tensor *out, tensor packed, tensor absmax, tensor absmax2, tensor code2, double offset,
                         int64_t blocksize, int64_t blocksize2, int64_t *shape, int ndim, int dtype) {
  PROTECT(
    torch::NoGradGuard no_grad;
    State st = makeState(packed, absmax, absmax2, code2, offset, blocksize, blocksize2, shape, ndim);
    out[0] = new torch::Tensor(st.dense((at::ScalarType)dtype));
  )
}

// herd_nf4_linear writes to *out x @ W^T (+ bias when bias != NULL), W the
// NF4 weight described as for herd_nf4_dequantize, dequantised to x's dtype
// in the forward pass and again in the backward pass. Gradients flow to x
// (and to bias when it requires grad), never to W.
void herd_nf4_linear(tensor *out, tensor x, tensor packed, tensor absmax, tensor absmax2, tensor code2,
                     double offset, int64_t blocksize, int64_t blocksize2, int64_t *shape, int ndim, tensor bias) {
  PROTECT(
    State st = makeState(packed, absmax, absmax2, code2, offset, blocksize, blocksize2, shape, ndim);
    TORCH_CHECK(ndim == 2, "nf4: a linear weight is [out, in], got ", ndim, " dimensions");
    TORCH_CHECK(x->dim() >= 1 && x->size(-1) == shape[1], "nf4: input has ", x->size(-1),
                " features, weight expects ", shape[1]);
    TORCH_CHECK(x->device() == st.packed.device(), "nf4: input and weight are on different devices");
    auto opt = [](const at::Tensor &t) { return t.defined() ? c10::optional<at::Tensor>(t) : c10::nullopt; };
    at::Tensor b = bias != nullptr ? *bias : at::Tensor();
    out[0] = new torch::Tensor(LinearFn::apply(*x, st.packed, st.absmax, opt(st.absmax2), opt(st.code2), opt(b),
                                               offset, blocksize, blocksize2, st.shape));
  )
}

} // extern "C"
