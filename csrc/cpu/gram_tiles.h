// a3ext's own Gram kernel, float32 and float64 (gram_tiles.cpp): the "own" GEMM engine of
// a3ext.gram. Built only into the AVX512 object library; gram_kernel.cpp runs it
// on its threads.
#pragma once
#include <algorithm>
#include <cstdint>

namespace a3ext::cpu {

// (Inline, so that builds without the AVX-512 object still have them.)

// C rounded up to 16: the side of the accumulation buffer Gt.
inline int64_t gram_own_padded(int64_t C) { return (C + 15) / 16 * 16; }

// The packed panel (pixels x Cp elements) stays within this much of L1.
constexpr int64_t kGramOwnPanelBytes = 32768;

// Pixels per packed panel for C channels of elem_size bytes: a multiple of 16
// between 16 and 256 (float32, C = 64: 128; float64: 64); also the smallest
// useful range per thread is 4 panels.
inline int64_t gram_own_panel_pixels(int64_t C, int64_t elem_size) {
  return std::clamp<int64_t>(kGramOwnPanelBytes / elem_size / gram_own_padded(C) / 16 * 16, 16, 256);
}

// Whether the kernel suits C channels: a panel of 16 pixels still fits the L1
// budget (C <= 512 float32, 256 float64); beyond, its panels thin out and its
// per-thread C x C buffers grow.
inline bool gram_own_suits(int64_t C, int64_t elem_size) {
  return 16 * gram_own_padded(C) * elem_size <= kGramOwnPanelBytes;
}

// Gt (Cp x Cp, Cp = gram_own_padded(C)) += F F^T for F (C, M) with row stride ldf,
// on the calling thread: entry (i, j), i <= j, lands in Gt[j * Cp + i] (the
// diagonal blocks' other entries too; the rest of Gt is untouched).
// Defined only when A3EXT_HAVE_AVX512.
void gram_own_accumulate_avx512(const float* F, int64_t C, int64_t ldf, int64_t M, float* Gt);
void gram_own_accumulate_avx512(const double* F, int64_t C, int64_t ldf, int64_t M, double* Gt);

// G (C x C, row-major): G[i][j] = G[j][i] for the rows i in [i0, i1) and every
// j < i (the mirror of an upper triangle). Any 0 <= i0 <= i1 <= C; writes only
// those rows, so calls on disjoint ranges may run on different threads.
// Defined only when A3EXT_HAVE_AVX512.
void gram_mirror_rows_avx512(float* G, int64_t C, int64_t i0, int64_t i1);
void gram_mirror_rows_avx512(double* G, int64_t C, int64_t i0, int64_t i1);

// S = (g + g^T) * s for g, S (C x C, row-major, distinct), the rows i in [i0, i1)
// (any 0 <= i0 <= i1 <= C) and every column: the Gram backward's symmetric part.
// Defined only when A3EXT_HAVE_AVX512.
void gram_symmetric_sum_rows_avx512(const float* g, float* S, int64_t C, float s, int64_t i0, int64_t i1);
void gram_symmetric_sum_rows_avx512(const double* g, double* S, int64_t C, double s, int64_t i0, int64_t i1);

}  // namespace a3ext::cpu
