// a3ext's own Gram kernel, float32 and float64 (the "own" GEMM engine of a3ext.gram),
// AVX-512; compiled only into the AVX512 object library (see CMakeLists.txt) and
// used only when ATen's CPU capability is AVX512.
//
// G = s F F^T for one image, F (C, M) row-major. gram_kernel.cpp splits the
// pixels into one contiguous range per thread; each thread walks its range in panels of kc
// pixels: it transposes the panel (C x kc) into a pixel-major copy (kc x Cp,
// Cp = C rounded up to 16, zero padded; kc = 128 at C = 64 in float32) that stays in L1,
// then runs an outer-product micro-kernel over the block upper triangle: 32 rows
// of G (two vectors; 16 in float64) x 8 columns (broadcasts), 16 accumulators in registers for
// the whole panel. Each thread sums into its own Cp x Cp buffer; gram_kernel.cpp
// adds the buffers, scales and mirrors, so G is exactly symmetric. (This file is
// compiled without OpenMP: the threads are started by the caller.)
//
// Why not MKL's SYRK or a GEMM: with C = 64 and M = 16384 (a style layer) the
// work is a long reduction onto a tiny output; on a 2-core Xeon, one thread,
// MKL's SYRK took 1.1 ms (62 GFLOP/s on the triangle) and torch.bmm 1.6 ms for
// the full product. This kernel computes 75 % of the full product at C = 64 in
// float32 (62.5 % in float64, whose blocks are 16 rows; the diagonal blocks whole)
// with both operands of every FMA in registers or L1.
#include "gram_tiles.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace a3ext::cpu {
namespace {

// The AVX-512 operations per element type; L = lanes per register.
template <typename T>
struct Avx512;

template <>
struct Avx512<float> {
  using R = __m512;
  static constexpr int L = 16;
  static R zero() { return _mm512_setzero_ps(); }
  static R load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, R v) { _mm512_storeu_ps(p, v); }
  static R set1(float v) { return _mm512_set1_ps(v); }
  static R fmadd(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static R add(R a, R b) { return _mm512_add_ps(a, b); }
  static R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  // the first n lanes of v to p
  static void store_first(float* p, R v, int n) { _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), v); }
  // 16 x 16 transpose of r (rows) in registers.
  static void transpose(R r[16]) {
    R t[16];
    for (int i = 0; i < 16; i += 2) {
      t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
      const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]);
      const __m512d c = _mm512_castps_pd(t[i + 2]), d = _mm512_castps_pd(t[i + 3]);
      r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
      r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
      r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
      r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int i = 0; i < 16; i += 8)
      for (int j = 0; j < 4; ++j) {
        t[i + j] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0x88);
        t[i + j + 4] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0xdd);
      }
    for (int j = 0; j < 8; ++j) {
      r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
      r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xdd);
    }
  }
};

template <>
struct Avx512<double> {
  using R = __m512d;
  static constexpr int L = 8;
  static R zero() { return _mm512_setzero_pd(); }
  static R load(const double* p) { return _mm512_loadu_pd(p); }
  static void store(double* p, R v) { _mm512_storeu_pd(p, v); }
  static R set1(double v) { return _mm512_set1_pd(v); }
  static R fmadd(R a, R b, R c) { return _mm512_fmadd_pd(a, b, c); }
  static R add(R a, R b) { return _mm512_add_pd(a, b); }
  static R mul(R a, R b) { return _mm512_mul_pd(a, b); }
  static void store_first(double* p, R v, int n) { _mm512_mask_storeu_pd(p, static_cast<__mmask8>((1u << n) - 1), v); }
  // 8 x 8 transpose of r (rows) in registers.
  static void transpose(R r[8]) {
    R t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
      t[i] = _mm512_unpacklo_pd(r[i], r[i + 1]);      // rows i, i+1: elements 0, 2, 4, 6
      t[i + 1] = _mm512_unpackhi_pd(r[i], r[i + 1]);  // elements 1, 3, 5, 7
    }
    for (int i = 0; i < 8; i += 4)
      for (int k = 0; k < 2; ++k) {
        u[i + k] = _mm512_shuffle_f64x2(t[i + k], t[i + 2 + k], 0x88);      // elements k, k+4
        u[i + 2 + k] = _mm512_shuffle_f64x2(t[i + k], t[i + 2 + k], 0xdd);  // elements k+2, k+6
      }
    for (int k = 0; k < 4; ++k) {
      r[k] = _mm512_shuffle_f64x2(u[k], u[k + 4], 0x88);
      r[k + 4] = _mm512_shuffle_f64x2(u[k], u[k + 4], 0xdd);
    }
  }
};

// panel[q * Cp + c] = F[c * ldf + q] for q < kc, c < C; 0 for C <= c < Cp.
// (Rows outer, pixels inner: L rows are read as L sequential streams; the other
// order touches every row's line in turn, and rows M elements apart share L1 sets.)
template <typename T>
void pack(const T* F, int64_t C, int64_t Cp, int64_t ldf, int64_t kc, T* panel) {
  using V = Avx512<T>;
  constexpr int L = V::L;
  const int64_t kv = kc / L * L;
  for (int64_t c0 = 0; c0 < Cp; c0 += L) {
    for (int64_t q0 = 0; q0 < kv; q0 += L) {
      typename V::R r[L];
      for (int64_t i = 0; i < L; ++i) r[i] = c0 + i < C ? V::load(F + (c0 + i) * ldf + q0) : V::zero();
      V::transpose(r);
      for (int64_t i = 0; i < L; ++i) V::store(panel + (q0 + i) * Cp + c0, r[i]);
    }
  }
  for (int64_t q = kv; q < kc; ++q) {  // the last pixels of a row that ends mid-vector
    for (int64_t c = 0; c < C; ++c) panel[q * Cp + c] = F[c * ldf + q];
    for (int64_t c = C; c < Cp; ++c) panel[q * Cp + c] = T(0);
  }
}

// acc(L MV x 8) over the panel's kc pixels: rows i0.. of G (vectors), columns
// j0..j0+7 (broadcasts); added to Gt[j * Cp + i] (G transposed; symmetric).
// (Not inlined: compiled on its own, the 16 accumulators stay in registers; inlined
// into the loops below, GCC 12 spilled some of them to the stack.)
template <typename T, int MV>
__attribute__((noinline)) void tile(const T* __restrict panel, int64_t Cp, int64_t kc, int64_t i0, int64_t j0,
                                    T* __restrict Gt) {
  using V = Avx512<T>;
  constexpr int NR = 8, L = V::L;
  typename V::R acc[MV][NR];
  for (int v = 0; v < MV; ++v)
    for (int j = 0; j < NR; ++j) acc[v][j] = V::zero();
  for (int64_t q = 0; q < kc; ++q) {
    const T* row = panel + q * Cp;
    typename V::R a[MV];
    for (int v = 0; v < MV; ++v) a[v] = V::load(row + i0 + L * v);
    for (int j = 0; j < NR; ++j) {
      const typename V::R b = V::set1(row[j0 + j]);
      for (int v = 0; v < MV; ++v) acc[v][j] = V::fmadd(a[v], b, acc[v][j]);
    }
  }
  for (int j = 0; j < NR; ++j)
    for (int v = 0; v < MV; ++v) {
      T* g = Gt + (j0 + j) * Cp + i0 + L * v;
      V::store(g, V::add(V::load(g), acc[v][j]));
    }
}

template <typename T>
void accumulate(const T* F, int64_t C, int64_t ldf, int64_t M, T* Gt) {
  constexpr int L = Avx512<T>::L;
  const int64_t Cp = gram_own_padded(C), kKc = gram_own_panel_pixels(C, sizeof(T));
  // the packed panel, 64-byte aligned (its rows are whole vectors: Cp is a multiple
  // of 16 floats / 8 doubles, so aligned rows never straddle a cache line)
  std::vector<T> storage(static_cast<size_t>(kKc * Cp + 64 / sizeof(T)));
  T* const panel = reinterpret_cast<T*>((reinterpret_cast<std::uintptr_t>(storage.data()) + 63) & ~std::uintptr_t(63));
  for (int64_t p0 = 0; p0 < M; p0 += kKc) {
    const int64_t kc = std::min(kKc, M - p0);
    pack(F + p0, C, Cp, ldf, kc, panel);
    int64_t i0 = 0;
    for (; i0 + 2 * L <= Cp; i0 += 2 * L)
      for (int64_t j0 = i0; j0 < Cp; j0 += 8) tile<T, 2>(panel, Cp, kc, i0, j0, Gt);
    for (; i0 < Cp; i0 += L)
      for (int64_t j0 = i0; j0 < Cp; j0 += 8) tile<T, 1>(panel, Cp, kc, i0, j0, Gt);
  }
}

// The rows [a0, a1) of [i0, i1) that whole L x L blocks cover (a0, a1 multiples of
// L; a0 <= a1): the block loops below touch no row outside [i0, i1) for any range.
template <int L>
std::pair<int64_t, int64_t> block_rows(int64_t C, int64_t i0, int64_t i1) {
  const int64_t a0 = std::min((i0 + L - 1) / L * L, i1);
  const int64_t a1 = std::max(a0, std::min(i1, C) / L * L);
  return {a0, a1};
}

// G[i][j] = G[j][i] for the rows i in [i0, i1) and every j < i: whole L x L blocks
// below the diagonal by register transposes of the block above it, the diagonal
// blocks by a transpose stored under a lane mask (only j < i), rows outside whole
// blocks one element at a time.
template <typename T>
void mirror_rows(T* G, int64_t C, int64_t i0, int64_t i1) {
  using V = Avx512<T>;
  constexpr int L = V::L;
  const auto [a0, a1] = block_rows<L>(C, i0, i1);
  for (int64_t b0 = a0; b0 < a1; b0 += L) {
    typename V::R r[L];
    for (int64_t c0 = 0; c0 <= b0; c0 += L) {  // block (b0, c0) from block (c0, b0) above the diagonal
      for (int i = 0; i < L; ++i) r[i] = V::load(G + (c0 + i) * C + b0);
      V::transpose(r);
      if (c0 < b0) {
        for (int i = 0; i < L; ++i) V::store(G + (b0 + i) * C + c0, r[i]);
      } else {
        for (int i = 1; i < L; ++i) V::store_first(G + (b0 + i) * C + c0, r[i], i);
      }
    }
  }
  auto scalar_rows = [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i)
      for (int64_t j = 0; j < i; ++j) G[i * C + j] = G[j * C + i];
  };
  scalar_rows(i0, a0);
  scalar_rows(a1, i1);
}

// S[i][j] = (g[i][j] + g[j][i]) * s for the rows i in [i0, i1) and every j: whole
// L x L blocks as the block plus the transpose of its mirror block, the columns
// and rows outside whole blocks one element at a time.
template <typename T>
void symmetric_sum_rows(const T* g, T* S, int64_t C, T s, int64_t i0, int64_t i1) {
  using V = Avx512<T>;
  constexpr int L = V::L;
  const int64_t whole = C / L * L;  // columns covered by whole blocks
  const auto [a0, a1] = block_rows<L>(C, i0, i1);
  const typename V::R sv = V::set1(s);
  auto scalar = [&](int64_t i, int64_t j0) {
    for (int64_t j = j0; j < C; ++j) S[i * C + j] = (g[i * C + j] + g[j * C + i]) * s;
  };
  for (int64_t b0 = a0; b0 < a1; b0 += L) {
    typename V::R r[L];
    for (int64_t c0 = 0; c0 < whole; c0 += L) {
      for (int i = 0; i < L; ++i) r[i] = V::load(g + (c0 + i) * C + b0);  // block (c0, b0)
      V::transpose(r);  // r[i][j] = g[c0 + j][b0 + i]
      for (int i = 0; i < L; ++i)
        V::store(S + (b0 + i) * C + c0, V::mul(V::add(V::load(g + (b0 + i) * C + c0), r[i]), sv));
    }
    for (int64_t i = b0; i < b0 + L; ++i) scalar(i, whole);
  }
  for (int64_t i = i0; i < a0; ++i) scalar(i, 0);
  for (int64_t i = a1; i < i1; ++i) scalar(i, 0);
}

}  // namespace

void gram_symmetric_sum_rows_avx512(const float* g, float* S, int64_t C, float s, int64_t i0, int64_t i1) {
  symmetric_sum_rows(g, S, C, s, i0, i1);
}
void gram_symmetric_sum_rows_avx512(const double* g, double* S, int64_t C, double s, int64_t i0, int64_t i1) {
  symmetric_sum_rows(g, S, C, s, i0, i1);
}

void gram_mirror_rows_avx512(float* G, int64_t C, int64_t i0, int64_t i1) { mirror_rows(G, C, i0, i1); }
void gram_mirror_rows_avx512(double* G, int64_t C, int64_t i0, int64_t i1) { mirror_rows(G, C, i0, i1); }

void gram_own_accumulate_avx512(const float* F, int64_t C, int64_t ldf, int64_t M, float* Gt) {
  accumulate(F, C, ldf, M, Gt);
}

void gram_own_accumulate_avx512(const double* F, int64_t C, int64_t ldf, int64_t M, double* Gt) {
  accumulate(F, C, ldf, M, Gt);
}

}  // namespace a3ext::cpu
