// MKL routines that libtorch_cpu exports on x86 wheels but declares in no
// header we can rely on, found at run time (dlsym on the library that provides
// sgemm_), so that the extension still loads and runs on torch builds without
// MKL (ARM, macOS, source builds with OpenBLAS): there every pointer is null and
// the callers keep to their other engines.
//
//   cblas_sgemm_pack_get_size / cblas_sgemm_pack / cblas_sgemm_compute
//       MKL's packed-GEMM API (float32 only: MKL has no packed dgemm). A weight
//       packed once is reused by every time step, which skips MKL's own per-call
//       packing of B (the recurrent GEMM of a time step is small, so that
//       packing is a large share of it).
//   mkl_blas_ssyrk / mkl_blas_dsyrk
//       MKL's internal SYRK with Fortran (column-major, by-reference) arguments,
//       its integers 64-bit;
//       libtorch_cpu exports no cblas_?syrk nor ?syrk_.
//
// A3EXT_DISABLE_MKL=1 in the environment hides them (tests of the fallback).
#pragma once
#include <ATen/ATen.h>

#include <cstddef>
#include <cstdint>

namespace a3ext::cpu {

struct MklApi {
  // MKL_INT is int in the LP64 interface that torch links.
  using PackGetSize = size_t (*)(int identifier, int m, int n, int k);
  using Pack = void (*)(int layout, int identifier, int trans, int m, int n, int k, float alpha,
                        const float* src, int ld, float* dest);
  using Compute = void (*)(int layout, int transa, int transb, int m, int n, int k, const float* a,
                           int lda, const float* b, int ldb, float beta, float* c, int ldc);
  // MKL's internal layer takes 64-bit integers (its disassembly compares n as a
  // quadword; the LP64 Fortran wrapper, not exported, widens them).
  using SyrkS = void (*)(const char* uplo, const char* trans, const int64_t* n, const int64_t* k,
                         const float* alpha, const float* a, const int64_t* lda, const float* beta,
                         float* c, const int64_t* ldc);
  using SyrkD = void (*)(const char* uplo, const char* trans, const int64_t* n, const int64_t* k,
                         const double* alpha, const double* a, const int64_t* lda, const double* beta,
                         double* c, const int64_t* ldc);
  PackGetSize pack_get_size = nullptr;
  Pack pack = nullptr;
  Compute compute = nullptr;
  SyrkS ssyrk = nullptr;
  SyrkD dsyrk = nullptr;

  bool has_packed_sgemm() const { return pack_get_size && pack && compute; }
  template <typename T>
  bool has_syrk() const;
  const char* library = "";  // where the symbols were looked up
};
template <>
inline bool MklApi::has_syrk<float>() const { return ssyrk != nullptr; }
template <>
inline bool MklApi::has_syrk<double>() const { return dsyrk != nullptr; }

// Resolved once per process.
const MklApi& mkl_api();

// CBLAS enum values (mkl_cblas.h).
constexpr int kCblasRowMajor = 101, kCblasNoTrans = 111, kCblasTrans = 112, kCblasBMatrix = 162,
              kCblasPacked = 151;

// B (K x N) = W or W^T, W row-major with row stride ld, packed once for
// C = A @ B products with any number of rows. float32 only.
class PackedB {
 public:
  // trans = false: W is (K, N); trans = true: W is (N, K) and B = W^T.
  PackedB(const float* W, int64_t K, int64_t N, int64_t ld, bool trans, int64_t rows_hint);
  ~PackedB();
  PackedB(const PackedB&) = delete;
  PackedB& operator=(const PackedB&) = delete;
  // C (M x N, row stride ldc) = A (M x K, row stride lda) @ B + beta * C.
  void gemm(int64_t M, const float* A, int64_t lda, float beta, float* C, int64_t ldc) const;
  int64_t K() const { return K_; }
  int64_t N() const { return N_; }

 private:
  int64_t K_, N_;
  // The packed copy (bytes, 64-byte aligned), taken from and given back to the
  // workspace pool (workspace.h): MKL asks for several MB (far more than it
  // writes), and fresh pages on every call cost about a millisecond of page
  // faults per weight.
  at::Tensor buffer_;
};

// C (n x n, row-major, row stride ldc), upper triangle only (j >= i) =
// alpha * A A^T, A (n x k) row-major with row stride lda. Requires has_syrk<T>().
template <typename T>
void mkl_syrk_upper(int64_t n, int64_t k, T alpha, const T* A, int64_t lda, T* C, int64_t ldc);

}  // namespace a3ext::cpu
