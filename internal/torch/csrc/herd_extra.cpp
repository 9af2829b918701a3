// herd's own additions to the C API gotch exposes. Compiled by torchprep
// into libherdtorch.so next to gotch's wrappers; every function is extern
// "C", named herd_*, and reached from Go through the same trampolines.
#include "torch_api.h"
#include <ATen/autocast_mode.h>
#include <cmath>
#include <torch/version.h>

extern "C" {

// herd_torch_version is the version of the libtorch headers the library was
// compiled against.
const char *herd_torch_version() { return TORCH_VERSION; }

// herd_torch_parallel_info is libtorch's own report of its threading and
// BLAS/LAPACK configuration. The caller frees it.
char *herd_torch_parallel_info() { return strdup(at::get_parallel_info().c_str()); }

// herd_torch_config is libtorch's build configuration. The caller frees it.
char *herd_torch_config() { return strdup(at::show_config().c_str()); }

// herd_adamw_step applies one decoupled-weight-decay Adam step (Loshchilov
// & Hutter; PyTorch's torch.optim.AdamW, non-fused) to n parameters in
// place: p *= 1 - lr*wd; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g;
// p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps), with bc_i = 1 - b_i^step.
// Errors are reported through torch_last_err like every gotch call.
void herd_adamw_step(tensor *params, tensor *grads, tensor *exp_avg,
                     tensor *exp_avg_sq, int n, double lr, double beta1,
                     double beta2, double eps, double weight_decay,
                     int64_t step) {
  PROTECT(
    torch::NoGradGuard no_grad;
    const double bc1 = 1 - std::pow(beta1, (double)step);
    const double bc2 = 1 - std::pow(beta2, (double)step);
    for (int i = 0; i < n; i++) {
      torch::Tensor &p = *params[i];
      const torch::Tensor &g = *grads[i];
      torch::Tensor &m = *exp_avg[i];
      torch::Tensor &v = *exp_avg_sq[i];
      if (weight_decay != 0) p.mul_(1 - lr * weight_decay);
      m.lerp_(g, 1 - beta1);
      v.mul_(beta2).addcmul_(g, g, 1 - beta2);
      auto denom = (v.sqrt() / std::sqrt(bc2)).add_(eps);
      p.addcdiv_(m, denom, -lr / bc1);
    }
  )
}

// herd_autocast_set turns mixed precision on or off for the calling
// thread, as torch.autocast(device_type, dtype) does: on CUDA (device_type
// 1) or the CPU (0), eligible ops (matmul, linear) run in dtype while
// numerically sensitive ones stay in float32. Leaving clears the cast cache.
void herd_autocast_set(int device_type, int enabled, int dtype) {
  PROTECT(
    const auto st = static_cast<at::ScalarType>(dtype);
    if (device_type == 1) {
      at::autocast::set_enabled(enabled != 0);
      if (enabled) at::autocast::set_autocast_gpu_dtype(st);
    } else {
      at::autocast::set_cpu_enabled(enabled != 0);
      if (enabled) at::autocast::set_autocast_cpu_dtype(st);
    }
    if (!enabled) at::autocast::clear_cache();
  )
}

// herd_backward runs autograd from out with the incoming gradient grad
// (out.backward(grad)), accumulating into the leaves' .grad: the step of
// activation checkpointing that replays one layer.
void herd_backward(tensor out, tensor grad) {
  PROTECT(
    out->backward(*grad);
  )
}

}
