// Input validation and scale shared by the CPU and CUDA Gram-matrix kernels.
#pragma once
#include <ATen/ATen.h>

#include "checks.h"

namespace a3ext {

inline void check_gram_features(const char* op, const at::Tensor& f) {
  check_float(op, f, "features");
  TORCH_CHECK_VALUE(f.dim() == 4, op, ": expected features of shape (N, C, H, W), but got a ",
                    f.dim(), "-D tensor of shape ", f.sizes());
  check_output_size(op, "the output G", {f.size(0), f.size(1), f.size(1)}, "(N, C, C)", f, "features");
}

// grad (N, C, C) with the dtype and device of features (N, C, H, W).
inline void check_gram_backward_inputs(const char* op, const at::Tensor& grad, const at::Tensor& f) {
  check_tensors(op, {{grad, "grad"}, {f, "features"}});
  check_gram_features(op, f);
  check_same(op, f, "features", grad, "grad");
  check_shape(op, grad, "grad", {f.size(0), f.size(1), f.size(1)}, "(N, C, C)", " (N, C from features)");
}

// 1 / (C*H*W) when normalize (1 for empty maps, whose Gram matrix is 0 anyway).
inline double gram_scale(const at::Tensor& f, bool normalize) {
  const int64_t chw = f.size(1) * f.size(2) * f.size(3);
  return normalize && chw > 0 ? 1.0 / static_cast<double>(chw) : 1.0;
}

}  // namespace a3ext
