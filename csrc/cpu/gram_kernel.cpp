// CPU kernels of the Gram-matrix op (schemas in csrc/a3ext.cpp).
//
// G = s F F^T per image, F = features viewed as (C, H*W), s = 1 / (C*H*W) when
// normalize. G is symmetric, so for C >= 64 and H*W >= 1024 only the block
// upper triangle is computed (one GEMM per block row of width C - i0) and then
// mirrored; the scale is folded into the GEMM (BLAS alpha) or into the mirror
// pass (oneDNN). Smaller problems take one full GEMM, where splitting loses.
// The mkl engine runs MKL's own SYRK (mkl_blas_?syrk, found at run time) on the
// upper triangle instead; the own engine (AVX-512 CPUs) runs a3ext's
// kernel of gram_tiles.cpp. In `auto` mode the engine is measured per (dtype, C,
// H*W class) on the first call: blas (block triangle / full GEMM), oneDNN
// (float32), SYRK and the own kernel where this torch and CPU have them, each
// timed on one synthetic image of that shape.
// Backward: dF = s (dG + dG^T) F, one GEMM per image (bmm or oneDNN, measured per
// shape class like the forward), right for any (not necessarily symmetric)
// upstream gradient.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>


#include <algorithm>
#include <string>
#include <type_traits>
#include <vector>

#include "blas.h"
#include "../gram_common.h"
#include "gemm_engine.h"
#include "gram_tiles.h"
#include "mkl_dl.h"
#include "rnn_pointwise.h"
#include "workspace.h"

namespace a3ext::cpu {

namespace {

using at::Tensor;

// Thresholds below which the triangle split loses to one full GEMM, and the
// number of block rows (measured with benchmarks/bench_gram.py).
constexpr int64_t kTriangleMinChannels = 64;
constexpr int64_t kTriangleMinPixels = 1024;

// About 3 block rows (2/3 of the full FLOPs), each a multiple of 16 rows: 2, 3, 4
// and 6 were measured; 3 was best or within noise of the best everywhere.
int64_t block_rows(int64_t C) {
  return std::max<int64_t>(16, ((C + 2) / 3 + 15) / 16 * 16);
}

// Makes G exactly symmetric from its upper triangle (j >= i, which every path
// computes): G[i][j] = G[j][i] for j < i, by AVX-512 register transposes where
// ATen's capability is AVX512 (gram_tiles.cpp), else copied in 32 x 32 tiles so
// that the transposed reads stay in cache; with `scale`, first multiplies the
// upper triangle by s. The threads take at least 4 tiles of 32 rows each.
template <typename T>
void mirror(T* G, int64_t C, bool scale, T s) {
  constexpr int64_t kTile = 32;
  const int64_t tiles = (C + kTile - 1) / kTile;
  if (scale) {
    at::parallel_for(0, C, 64, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = i; j < C; ++j) G[i * C + j] *= s;
    });
  }
#ifdef A3EXT_HAVE_AVX512
  if (own_engine_available()) {
    at::parallel_for(0, tiles, 4, [&](int64_t t0, int64_t t1) {
      gram_mirror_rows_avx512(G, C, t0 * kTile, std::min(C, t1 * kTile));
    });
    return;
  }
#endif
  at::parallel_for(0, tiles, 4, [&](int64_t t0, int64_t t1) {
    for (int64_t ti = t0; ti < t1; ++ti) {
      const int64_t i0 = ti * kTile, i1 = std::min(C, i0 + kTile);
      for (int64_t j0 = 0; j0 <= i0; j0 += kTile) {  // tiles left of and on the diagonal
        const int64_t j1 = std::min(C, j0 + kTile);
        for (int64_t i = i0; i < i1; ++i)
          for (int64_t j = j0; j < std::min(j1, i); ++j) G[i * C + j] = G[j * C + i];
      }
    }
  });
}

#ifdef A3EXT_HAVE_AVX512
// The own engine for one image: the pixels split into one range per thread (at
// least 4 panels each), each thread accumulating its range into its own buffer
// (gram_own_accumulate_avx512); then G = s * (sum of the buffers), mirrored.
template <typename T>
void gram_own(const T* F, int64_t C, int64_t M, T s, T* G) {
  const int64_t Cp = gram_own_padded(C);
  const int64_t chunks = std::max<int64_t>(
      1, std::min<int64_t>(at::get_num_threads(), M / (4 * gram_own_panel_pixels(C, sizeof(T)))));
  // per-thread sums, 64-byte aligned (the kernel's row updates are whole vectors;
  // a std::vector's 16-byte alignment splits every one across two cache lines)
  const auto partial_ws = Workspace::elements<T>(chunks * Cp * Cp);
  T* partial = partial_ws.template data<T>();
  std::fill(partial, partial + chunks * Cp * Cp, T(0));
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t p0 = M * c / chunks, p1 = M * (c + 1) / chunks;
      gram_own_accumulate_avx512(F + p0, C, M, p1 - p0, partial + c * Cp * Cp);
    }
  });
  for (int64_t j = 0; j < C; ++j)  // upper triangle: G[i][j] = s * sum_c Gt_c[j][i], i <= j
    for (int64_t i = 0; i <= j; ++i) {
      T v = partial[j * Cp + i];
      for (int64_t c = 1; c < chunks; ++c) v += partial[c * Cp * Cp + j * Cp + i];
      G[i * C + j] = s * v;
    }
  mirror<T>(G, C, false, T(0));
}
#endif

// G (N, C, C) from contiguous f (N, C, H, W) with the given engine, s the scale.
void gram_into(const Tensor& f, Tensor& G, double s, Engine engine) {
  const int64_t N = f.size(0), C = f.size(1), M = f.size(2) * f.size(3);
  const bool triangle = C >= kTriangleMinChannels && M >= kTriangleMinPixels;
  const int64_t B = triangle ? block_rows(C) : C;
  const bool onednn = engine == Engine::OneDnn;
  AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "gram_forward", [&] {
    using T = scalar_t;
    for (int64_t n = 0; n < N; ++n) {
      const Tensor Fn = f[n].view({C, M});
      Tensor Gn = G[n];
      const T* F = Fn.const_data_ptr<T>();
      T* g = Gn.mutable_data_ptr<T>();
#ifdef A3EXT_HAVE_AVX512
      if (engine == Engine::Own) {  // a3ext's kernel (gram_tiles.cpp)
        gram_own<T>(F, C, M, static_cast<T>(s), g);
        continue;
      }
#endif
      if (engine == Engine::Mkl) {  // SYRK: the upper triangle in one call, scale folded in
        mkl_syrk_upper<T>(C, M, static_cast<T>(s), F, M, g, C);
        mirror<T>(g, C, false, T(0));
        continue;
      }
      // strip k: rows [k*B, k*B + bi) against columns [k*B, C)
      auto strip = [&](int64_t k) {
        const int64_t i0 = k * B, bi = std::min(B, C - i0);
        if (onednn) {
          const Tensor r = OneDnnLinear::get()(Fn.narrow(0, i0, bi), Fn.narrow(0, i0, C - i0));
          Gn.narrow(0, i0, bi).narrow(1, i0, C - i0).copy_(r);
        } else {
          gemm<T>(false, true, bi, C - i0, M, static_cast<T>(s), F + i0 * M, M, F + i0 * M, M,
                  T(0), g + i0 * C + i0, C);
        }
      };
      // One multi-threaded GEMM per strip. (Running pairs of strips on separate
      // threads with single-threaded GEMMs was measured slower on 2 cores.)
      for (int64_t k = 0; k * B < C; ++k) strip(k);
      // always mirror, so G is exactly symmetric (one full GEMM is not: G[i][j]
      // and G[j][i] are summed in different orders)
      mirror<T>(g, C, onednn, static_cast<T>(s));
    }
  });
}

// The engine of one Gram pass ("gram_fwd", "gram_bwd") on features f, measured
// per (pass, dtype, C, H*W class) in `auto` mode (select_engine): each trial is
// run(engine, image, matrix) on one synthetic image of f's shape and a synthetic
// C x C matrix, made on the first (untimed) trial.
template <typename Run>
Engine gram_engine(const char* pass, const Tensor& f, const std::vector<Engine>& candidates, const Run& run) {
  const int64_t C = f.size(1), M = f.size(2) * f.size(3);
  const at::ScalarType dtype = f.scalar_type();
  const std::string key = std::string(pass) + " " + c10::toString(dtype) + " C" + std::to_string(C) + " M" +
                          std::to_string(size_class(M));
  Tensor image, matrix;
  auto trial = [&](Engine e, bool /*warmup*/) -> std::vector<double> {
    if (!image.defined()) {
      image = synthetic({1, C, f.size(2), f.size(3)}, 1.0, f.options(), 1);
      matrix = synthetic({1, C, C}, 1.0, f.options(), 2);
    }
    return {seconds_of([&] { run(e, image, matrix); })};
  };
  const double flops = 2.0 * C * C * M;
  return select_engine(key, dtype, candidates, trial, flops > 2e8 ? 1 : 3);
}

Tensor gram_forward_cpu(const Tensor& features, bool normalize) {
  const char* op = "a3ext.gram";
  check_gram_features(op, features);
  const Tensor f = features.contiguous();
  const int64_t N = f.size(0), C = f.size(1), M = f.size(2) * f.size(3);
  Tensor G = at::empty({N, C, C}, f.options());
  if (N == 0 || C == 0) return G;
  if (M == 0) return G.zero_();
  const double s = gram_scale(f, normalize);
  const at::ScalarType dtype = f.scalar_type();
  std::vector<Engine> candidates{Engine::Blas};
  if (dtype == at::kFloat && OneDnnLinear::get().available()) candidates.push_back(Engine::OneDnn);
  const bool syrk = dtype == at::kFloat ? mkl_api().has_syrk<float>() : mkl_api().has_syrk<double>();
  if (syrk) candidates.push_back(Engine::Mkl);
  if (own_engine_available() && gram_own_suits(C, static_cast<int64_t>(f.element_size())))
    candidates.push_back(Engine::Own);
  gram_into(f, G, s, gram_engine("gram_fwd", f, candidates, [&](Engine e, const Tensor& image, Tensor& matrix) {
              gram_into(image, matrix, s, e);
            }));
  return G;
}

// (g + g^T) * s for g (N, C, C): by AVX-512 block transposes where ATen's
// capability is AVX512 (at C = 320 one transposed add through TensorIterator took
// 50 us, most of a small image's backward), else ATen's add and mul (the same
// values: s is applied in the tensor's dtype both ways). The threads take tiles of
// 32 rows of any image, at least 4 at a time.
Tensor symmetric_part(const Tensor& grad, double s) {
#ifdef A3EXT_HAVE_AVX512
  if (own_engine_available()) {
    const Tensor g = grad.contiguous();
    Tensor S = at::empty_like(g, at::MemoryFormat::Contiguous);
    const int64_t N = g.size(0), C = g.size(1);
    constexpr int64_t kRows = 32;
    const int64_t tiles = (C + kRows - 1) / kRows;
    AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "gram_symmetric_part", [&] {
      using T = scalar_t;
      const T* gp = g.const_data_ptr<T>();
      T* sp = S.mutable_data_ptr<T>();
      at::parallel_for(0, N * tiles, 4, [&](int64_t k0, int64_t k1) {
        for (int64_t k = k0; k < k1; ++k) {
          const int64_t n = k / tiles, t = k % tiles;
          gram_symmetric_sum_rows_avx512(gp + n * C * C, sp + n * C * C, C, static_cast<T>(s), t * kRows,
                                         std::min(C, (t + 1) * kRows));
        }
      });
    });
    return S;
  }
#endif
  return at::add(grad, grad.transpose(1, 2)).mul_(s);
}

// dF (N, C, H, W) = S @ F per image with the given engine: one bmm (blas), or a
// oneDNN GEMM per image with F_n^T as oneDNN's (out, in) weight.
Tensor backward_product(const Tensor& S, const Tensor& f, Engine engine) {
  const int64_t N = f.size(0), C = f.size(1), M = f.size(2) * f.size(3);
  if (engine != Engine::OneDnn) return at::bmm(S, f.view({N, C, M})).view(f.sizes());
  Tensor dF = at::empty_like(f);
  for (int64_t n = 0; n < N; ++n) dF[n].view({C, M}).copy_(OneDnnLinear::get()(S[n], f[n].view({C, M}).t()));
  return dF;
}

Tensor gram_backward_cpu(const Tensor& grad, const Tensor& features, bool normalize) {
  const char* op = "a3ext.gram_backward";
  check_gram_backward_inputs(op, grad, features);
  const int64_t N = features.size(0), C = features.size(1);
  const Tensor f = features.contiguous();
  const int64_t M = f.size(2) * f.size(3);
  if (N == 0 || C == 0 || M == 0) return at::zeros_like(f);
  // S = s (dG + dG^T): the symmetric part, so a single GEMM gives dF.
  const Tensor S = symmetric_part(grad, gram_scale(f, normalize));
  // The engine of the product, measured per (dtype, C, H*W class) like the
  // forward's: bmm (MKL) or oneDNN (float32). (It was oneDNN from 1e8 FLOPs by a
  // rule measured on an AMD EPYC; on an Intel Xeon oneDNN took 0.96 ms where bmm
  // took 0.42 ms at C = 64, H*W = 16384.)
  const at::ScalarType dtype = f.scalar_type();
  std::vector<Engine> candidates{Engine::Blas};
  if (dtype == at::kFloat && OneDnnLinear::get().available()) candidates.push_back(Engine::OneDnn);
  return backward_product(S, f, gram_engine("gram_bwd", f, candidates, [&](Engine e, const Tensor& image, Tensor& matrix) {
                             backward_product(matrix, image, e);
                           }));
}

}  // namespace

TORCH_LIBRARY_IMPL(a3ext, CPU, m) {
  m.impl("gram_forward", &gram_forward_cpu);
  m.impl("gram_backward", &gram_backward_cpu);
}

}  // namespace a3ext::cpu
