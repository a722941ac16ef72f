// CUDA kernels of the Gram-matrix op (schemas in csrc/a3ext.cpp).
//
// Forward: cublas{S,D}syrk computes one triangle of s F F^T per image (the
// scale folded into alpha, half the FLOPs of a GEMM), then a mirror kernel
// fills the other triangle. Backward: dF = s (dG + dG^T) F as one batched GEMM.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <cublas_v2.h>
#include <torch/library.h>

#include "../gram_common.h"

namespace a3ext::cuda {
namespace {

using at::Tensor;

#define A3EXT_CUBLAS_CHECK(expr)                                                   \
  do {                                                                             \
    const cublasStatus_t status_ = (expr);                                         \
    TORCH_CHECK(status_ == CUBLAS_STATUS_SUCCESS, "a3ext: ", #expr, " failed: ",   \
                cublasGetStatusString(status_));                                  \
  } while (0)

cublasStatus_t syrk(cublasHandle_t h, int n, int k, const float* alpha, const float* A, int lda,
                    const float* beta, float* C, int ldc) {
  return cublasSsyrk(h, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_T, n, k, alpha, A, lda, beta, C, ldc);
}
cublasStatus_t syrk(cublasHandle_t h, int n, int k, const double* alpha, const double* A, int lda,
                    const double* beta, double* C, int ldc) {
  return cublasDsyrk(h, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_T, n, k, alpha, A, lda, beta, C, ldc);
}

// G (N, C, C) row-major, whose column-major upper triangle (= row-major lower,
// j <= i) was written by syrk: copy it to the other half.
template <typename T>
__global__ void mirror_lower_to_upper(int64_t N, int64_t C, T* __restrict__ G) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= N * C * C) return;
  const int64_t n = idx / (C * C), r = idx % (C * C), i = r / C, j = r % C;
  if (j > i) G[n * C * C + i * C + j] = G[n * C * C + j * C + i];
}

Tensor gram_forward_cuda(const Tensor& features, bool normalize) {
  const char* op = "a3ext.gram";
  check_gram_features(op, features);
  const c10::cuda::CUDAGuard guard(features.device());
  const Tensor f = features.contiguous();
  const int64_t N = f.size(0), C = f.size(1), M = f.size(2) * f.size(3);
  Tensor G = at::empty({N, C, C}, f.options());
  if (N == 0 || C == 0) return G;
  if (M == 0) return G.zero_();
  TORCH_CHECK(C <= INT_MAX && M <= INT_MAX, op, ": C and H*W must fit in 32 bits for cuBLAS");
  cublasHandle_t handle = at::cuda::getCurrentCUDABlasHandle();  // bound to the current stream
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "gram_forward_cuda", [&] {
    using T = scalar_t;
    const T alpha = static_cast<T>(gram_scale(f, normalize)), beta = T(0);
    for (int64_t n = 0; n < N; ++n) {
      // row-major F (C, M) is column-major A (M, C): G = A^T A
      A3EXT_CUBLAS_CHECK(syrk(handle, static_cast<int>(C), static_cast<int>(M), &alpha,
                              f[n].const_data_ptr<T>(), static_cast<int>(M), &beta,
                              G[n].mutable_data_ptr<T>(), static_cast<int>(C)));
    }
    const int64_t total = N * C * C;
    mirror_lower_to_upper<T><<<static_cast<int>((total + 255) / 256), 256, 0, stream>>>(
        N, C, G.mutable_data_ptr<T>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return G;
}

Tensor gram_backward_cuda(const Tensor& grad, const Tensor& features, bool normalize) {
  const char* op = "a3ext.gram_backward";
  check_gram_features(op, features);
  check_same(op, features, "features", grad, "grad");
  const int64_t N = features.size(0), C = features.size(1);
  check_shape(op, grad, "grad", {N, C, C}, "(N, C, C)");
  const c10::cuda::CUDAGuard guard(features.device());
  const Tensor f = features.contiguous();
  const int64_t M = f.size(2) * f.size(3);
  if (N == 0 || C == 0 || M == 0) return at::zeros_like(f);
  const Tensor S = at::add(grad, grad.transpose(1, 2)).mul_(gram_scale(f, normalize));
  return at::bmm(S, f.view({N, C, M})).view(f.sizes());
}

}  // namespace

TORCH_LIBRARY_IMPL(a3ext, CUDA, m) {
  m.impl("gram_forward", &gram_forward_cuda);
  m.impl("gram_backward", &gram_backward_cuda);
}

}  // namespace a3ext::cuda
