// a3ext's own float32 Gram kernel (the "own" GEMM engine of a3ext.gram),
// AVX-512; compiled only into the AVX512 object library (see CMakeLists.txt) and
// used only when ATen's CPU capability is AVX512.
//
// G = s F F^T for one image, F (C, M) row-major. gram_kernel.cpp splits the
// pixels into one contiguous range per thread; each thread walks its range in panels of kc
// pixels: it transposes the panel (C x kc) into a pixel-major copy (kc x Cp,
// Cp = C rounded up to 16, zero padded; kc = 128 at C = 64) that stays in L1,
// then runs an outer-product micro-kernel over the block upper triangle: 32 rows
// of G (two vectors) x 8 columns (broadcasts), 16 accumulators in registers for
// the whole panel. Each thread sums into its own Cp x Cp buffer; gram_kernel.cpp
// adds the buffers, scales and mirrors, so G is exactly symmetric. (This file is
// compiled without OpenMP: the threads are started by the caller.)
//
// Why not MKL's SYRK or a GEMM: with C = 64 and M = 16384 (a style layer) the
// work is a long reduction onto a tiny output; on a 2-core Xeon, one thread,
// MKL's SYRK took 1.1 ms (62 GFLOP/s on the triangle) and torch.bmm 1.6 ms for
// the full product. This kernel computes 62.5 % of the full product (the
// diagonal blocks whole) with both operands of every FMA in registers or L1.
#include "gram_tiles.h"

#include <immintrin.h>

#include <algorithm>
#include <vector>

namespace a3ext::cpu {
namespace {

// Pixels per panel: as many as keep the panel (kc x Cp floats) within 32 KB of L1,
// a multiple of 16 between 16 and 256 (C = 64: 128).
int64_t panel_pixels(int64_t Cp) {
  return std::clamp<int64_t>(8192 / Cp / 16 * 16, 16, 256);
}

// 16 x 16 transpose of r (rows) in registers.
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
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

// panel[q * Cp + c] = F[c * ldf + q] for q < kc, c < C; 0 for C <= c < Cp.
// (Rows outer, pixels inner: 16 rows are read as 16 sequential streams; the other
// order touches every row's line in turn, and rows M floats apart share L1 sets.)
void pack(const float* F, int64_t C, int64_t Cp, int64_t ldf, int64_t kc, float* panel) {
  const int64_t kv = kc / 16 * 16;
  for (int64_t c0 = 0; c0 < Cp; c0 += 16) {
    for (int64_t q0 = 0; q0 < kv; q0 += 16) {
      __m512 r[16];
      for (int64_t i = 0; i < 16; ++i)
        r[i] = c0 + i < C ? _mm512_loadu_ps(F + (c0 + i) * ldf + q0) : _mm512_setzero_ps();
      transpose16(r);
      for (int64_t i = 0; i < 16; ++i) _mm512_storeu_ps(panel + (q0 + i) * Cp + c0, r[i]);
    }
  }
  for (int64_t q = kv; q < kc; ++q) {  // the last pixels of a row that ends mid-vector
    for (int64_t c = 0; c < C; ++c) panel[q * Cp + c] = F[c * ldf + q];
    for (int64_t c = C; c < Cp; ++c) panel[q * Cp + c] = 0.f;
  }
}

// acc(16 MV x 8) over the panel's kc pixels: rows i0.. of G (vectors), columns
// j0..j0+7 (broadcasts); added to Gt[j * Cp + i] (G transposed; symmetric).
// (Not inlined: compiled on its own, the 16 accumulators stay in registers; inlined
// into the loops above, GCC 12 spilled some of them to the stack.)
template <int MV>
__attribute__((noinline)) void tile(const float* __restrict panel, int64_t Cp, int64_t kc, int64_t i0,
                                    int64_t j0, float* __restrict Gt) {
  constexpr int NR = 8;
  __m512 acc[MV][NR];
  for (int v = 0; v < MV; ++v)
    for (int j = 0; j < NR; ++j) acc[v][j] = _mm512_setzero_ps();
  for (int64_t q = 0; q < kc; ++q) {
    const float* row = panel + q * Cp;
    __m512 a[MV];
    for (int v = 0; v < MV; ++v) a[v] = _mm512_loadu_ps(row + i0 + 16 * v);
    for (int j = 0; j < NR; ++j) {
      const __m512 b = _mm512_set1_ps(row[j0 + j]);
      for (int v = 0; v < MV; ++v) acc[v][j] = _mm512_fmadd_ps(a[v], b, acc[v][j]);
    }
  }
  for (int j = 0; j < NR; ++j)
    for (int v = 0; v < MV; ++v) {
      float* g = Gt + (j0 + j) * Cp + i0 + 16 * v;
      _mm512_storeu_ps(g, _mm512_add_ps(_mm512_loadu_ps(g), acc[v][j]));
    }
}

}  // namespace

int64_t gram_own_padded(int64_t C) { return (C + 15) / 16 * 16; }

int64_t gram_own_panel_pixels(int64_t C) { return panel_pixels(gram_own_padded(C)); }

void gram_own_accumulate_avx512(const float* F, int64_t C, int64_t ldf, int64_t M, float* Gt) {
  const int64_t Cp = gram_own_padded(C), kKc = panel_pixels(Cp);
  std::vector<float> panel(static_cast<size_t>(kKc * Cp));
  for (int64_t p0 = 0; p0 < M; p0 += kKc) {
    const int64_t kc = std::min(kKc, M - p0);
    pack(F + p0, C, Cp, ldf, kc, panel.data());
    int64_t i0 = 0;
    for (; i0 + 32 <= Cp; i0 += 32)
      for (int64_t j0 = i0; j0 < Cp; j0 += 8) tile<2>(panel.data(), Cp, kc, i0, j0, Gt);
    for (; i0 < Cp; i0 += 16)
      for (int64_t j0 = i0; j0 < Cp; j0 += 8) tile<1>(panel.data(), Cp, kc, i0, j0, Gt);
  }
}

}  // namespace a3ext::cpu
