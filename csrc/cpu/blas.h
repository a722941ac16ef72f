// Row-major GEMM on top of the Fortran BLAS that libtorch_cpu exports (MKL on
// x86 wheels). Calling it directly keeps the per-time-step loop free of
// dispatcher overhead and lets every operand be a strided view (leading
// dimension != row length), so no step ever copies its slice.
#pragma once
#include <c10/util/Exception.h>

#include <cstdint>
#include <limits>

extern "C" {
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
            const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
            const float* beta, float* c, const int* ldc);
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
            const double* alpha, const double* a, const int* lda, const double* b,
            const int* ldb, const double* beta, double* c, const int* ldc);
}

namespace a3ext::cpu {

inline int blas_int(int64_t v) {
  TORCH_CHECK(v <= std::numeric_limits<int>::max(),
              "a3ext: a matrix dimension of ", v, " exceeds the 32-bit BLAS interface");
  return static_cast<int>(v);
}

inline void blas_gemm(const char* ta, const char* tb, const int* m, const int* n, const int* k,
                      const float* alpha, const float* a, const int* lda, const float* b,
                      const int* ldb, const float* beta, float* c, const int* ldc) {
  sgemm_(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
inline void blas_gemm(const char* ta, const char* tb, const int* m, const int* n, const int* k,
                      const double* alpha, const double* a, const int* lda, const double* b,
                      const int* ldb, const double* beta, double* c, const int* ldc) {
  dgemm_(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// C (M x N, leading dim ldc) = alpha * op(A) (M x K) @ op(B) (K x N) + beta * C, row-major.
// op(X) = X^T when trans_X. Leading dims are the row strides of A, B, C as stored.
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // BLAS would do this too, but some reject K = 0 leading dims.
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
    return;
  }
  // Row-major C = op(A) op(B)  <=>  column-major C^T = op(B)^T op(A)^T.
  const char ta = trans_a ? 'T' : 'N';
  const char tb = trans_b ? 'T' : 'N';
  const int m = blas_int(N), n = blas_int(M), k = blas_int(K);
  const int la = blas_int(lda), lb = blas_int(ldb), lc = blas_int(ldc);
  blas_gemm(&tb, &ta, &m, &n, &k, &alpha, B, &lb, A, &la, &beta, C, &lc);
}

}  // namespace a3ext::cpu
