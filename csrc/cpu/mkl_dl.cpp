#include "mkl_dl.h"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>

#include "blas.h"
#include "workspace.h"

namespace a3ext::cpu {
namespace {

MklApi resolve() {
  MklApi api;
  const char* off = std::getenv("A3EXT_DISABLE_MKL");
  if (off != nullptr && std::strcmp(off, "") != 0 && std::strcmp(off, "0") != 0) return api;
  // The library that gives us sgemm_ (libtorch_cpu on the wheels); already
  // loaded, so RTLD_NOLOAD only hands out a reference to it.
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&sgemm_), &info) == 0 || info.dli_fname == nullptr) return api;
  void* lib = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
  if (lib == nullptr) return api;
  api.library = info.dli_fname;
  api.pack_get_size = reinterpret_cast<MklApi::PackGetSize>(dlsym(lib, "cblas_sgemm_pack_get_size"));
  api.pack = reinterpret_cast<MklApi::Pack>(dlsym(lib, "cblas_sgemm_pack"));
  api.compute = reinterpret_cast<MklApi::Compute>(dlsym(lib, "cblas_sgemm_compute"));
  api.ssyrk = reinterpret_cast<MklApi::SyrkS>(dlsym(lib, "mkl_blas_ssyrk"));
  api.dsyrk = reinterpret_cast<MklApi::SyrkD>(dlsym(lib, "mkl_blas_dsyrk"));
  // (the reference from dlopen is kept: the library stays loaded with torch anyway)
  return api;
}

}  // namespace

const MklApi& mkl_api() {
  static const MklApi api = resolve();
  return api;
}

PackedB::PackedB(const float* W, int64_t K, int64_t N, int64_t ld, bool trans, int64_t rows_hint)
    : K_(K), N_(N) {
  const MklApi& api = mkl_api();
  TORCH_INTERNAL_ASSERT(api.has_packed_sgemm(), "a3ext: MKL's packed GEMM is not available");
  const int m = blas_int(std::max<int64_t>(1, rows_hint)), n = blas_int(N), k = blas_int(K);
  const size_t bytes = api.pack_get_size(kCblasBMatrix, m, n, k);
  buffer_ = take_workspace(static_cast<int64_t>(bytes) + 64);
  api.pack(kCblasRowMajor, kCblasBMatrix, trans ? kCblasTrans : kCblasNoTrans, m, n, k, 1.0f, W,
           blas_int(ld), reinterpret_cast<float*>(buffer_.mutable_data_ptr<uint8_t>()));
}

PackedB::~PackedB() {
  if (buffer_.defined()) give_back_workspace(std::move(buffer_));
}

void PackedB::gemm(int64_t M, const float* A, int64_t lda, float beta, float* C, int64_t ldc) const {
  if (M == 0 || N_ == 0) return;
  if (K_ == 0) {
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N_; ++j) C[i * ldc + j] = beta == 0.f ? 0.f : beta * C[i * ldc + j];
    return;
  }
  mkl_api().compute(kCblasRowMajor, kCblasNoTrans, kCblasPacked, blas_int(M), blas_int(N_),
                    blas_int(K_), A, blas_int(lda), reinterpret_cast<const float*>(buffer_.const_data_ptr<uint8_t>()),
                    blas_int(N_),
                    beta, C, blas_int(ldc));
}

// Row-major C = A A^T (upper, j >= i) is column-major C^T = C with the lower
// triangle, from column-major A^T (k x n, leading dim lda): uplo 'L', trans 'T'.
template <>
void mkl_syrk_upper<float>(int64_t n, int64_t k, float alpha, const float* A, int64_t lda, float* C,
                           int64_t ldc) {
  const int64_t nn = n, kk = k, la = lda, lc = ldc;
  const float beta = 0.f;
  mkl_api().ssyrk("L", "T", &nn, &kk, &alpha, A, &la, &beta, C, &lc);
}
template <>
void mkl_syrk_upper<double>(int64_t n, int64_t k, double alpha, const double* A, int64_t lda,
                            double* C, int64_t ldc) {
  const int64_t nn = n, kk = k, la = lda, lc = ldc;
  const double beta = 0.;
  mkl_api().dsyrk("L", "T", &nn, &kk, &alpha, A, &la, &beta, C, &lc);
}

}  // namespace a3ext::cpu
