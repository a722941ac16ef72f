// a3ext's own recurrent-step GEMM (panel_gemm.h), float64, AVX-512; compiled only
// into the AVX512 object library (see CMakeLists.txt), used only when ATen's CPU
// capability is AVX512. (Compiled without OpenMP: the caller splits the panels
// over its threads.)
//
// For each panel (16 columns, two registers) and each block of up to 13 rows of A,
// the micro-kernel keeps the rows x 2 accumulators in registers for the whole
// depth K: per k it loads the panel's two vectors and broadcasts the rows' A[i][k]
// straight from A (A is not packed: its rows are the previous step's h or the
// step's gradients, already in cache; PanelWeight::gemm in rnn_kernel.cpp copies
// them first only when they lie a multiple of 4 KB apart), 2 FMAs per row. The rows are cut into near-equal blocks (50 rows:
// 13 + 13 + 12 + 12) so that no block runs mostly empty. Up to 13 rows (26
// accumulators of the 32 registers) rather than 10: each pass streams the panel
// from L2 once per block, and fewer, taller blocks cost fewer passes -- the bare
// 16-step loop, 2 threads, rows with stride K + 8, 41 alternating repetitions,
// medians: (50 x 512) @ (512 x 2048) 603 -> 567 us, (25 x 512) @ (512 x 2048)
// 355 -> 311 us, (50 x 2048) @ (2048 x 512) 581 -> 556 us; 14 rows let GCC spill
// more row pointers and was no faster; 12 rows give 50 the same 5 x 10 blocks.
// (With 10-row blocks, an earlier session on a 2-core Xeon: (50 x 512) @ (512 x 2048)
// 560-615 us against 745-830 us for torch.mm; (50 x 2048) @ (2048 x 512) 615-660
// against 790; in a 16-step loop with the strided rows of the LSTM's buffers 11.2 ms
// against 13.1 ms.)
#include "panel_gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <utility>

namespace a3ext::cpu {

void panel_pack(const double* W, int64_t K, int64_t N, int64_t ld, bool trans, double* panels, int64_t q0,
                int64_t q1) {
  for (int64_t q = q0; q < q1; ++q) {
    double* dst = panels + q * K * kPanelCols;
    const int64_t n0 = q * kPanelCols, n = std::min(kPanelCols, N - n0);
    if (!trans) {  // B = W: row k of the panel is W[k][n0 .. n0 + n)
      for (int64_t k = 0; k < K; ++k) {
        const double* src = W + k * ld + n0;
        double* d = dst + k * kPanelCols;
        for (int64_t j = 0; j < n; ++j) d[j] = src[j];
        for (int64_t j = n; j < kPanelCols; ++j) d[j] = 0.0;
      }
    } else {  // B = W^T: column j of the panel is row n0 + j of W; written in order,
              // reading the panel's rows of W side by side (8 x faster than column by column)
      const double* src[kPanelCols];
      for (int64_t j = 0; j < n; ++j) src[j] = W + (n0 + j) * ld;
      for (int64_t k = 0; k < K; ++k) {
        double* d = dst + k * kPanelCols;
        for (int64_t j = 0; j < n; ++j) d[j] = src[j][k];
        for (int64_t j = n; j < kPanelCols; ++j) d[j] = 0.0;
      }
    }
  }
}

namespace {

constexpr int kMaxRows = 13;  // rows per block: 26 accumulators

// C rows [0, MR) x the panel's n columns (n <= 16) = A @ panel (+ C).
// Not inlined: compiled on its own, the accumulators stay in registers.
template <int MR>
__attribute__((noinline)) void micro(int64_t K, const double* __restrict A, int64_t lda,
                                     const double* __restrict panel, double* __restrict C, int64_t ldc, int64_t n,
                                     bool accumulate) {
  __m512d c0[MR], c1[MR];
  for (int i = 0; i < MR; ++i) c0[i] = c1[i] = _mm512_setzero_pd();
  for (int64_t k = 0; k < K; ++k) {
    const __m512d b0 = _mm512_load_pd(panel + k * kPanelCols), b1 = _mm512_load_pd(panel + k * kPanelCols + 8);
    for (int i = 0; i < MR; ++i) {
      const __m512d a = _mm512_set1_pd(A[i * lda + k]);
      c0[i] = _mm512_fmadd_pd(a, b0, c0[i]);
      c1[i] = _mm512_fmadd_pd(a, b1, c1[i]);
    }
  }
  const __mmask8 m0 = n >= 8 ? __mmask8(0xFF) : __mmask8((1u << n) - 1);
  const __mmask8 m1 = n >= 16 ? __mmask8(0xFF) : n <= 8 ? __mmask8(0) : __mmask8((1u << (n - 8)) - 1);
  for (int i = 0; i < MR; ++i) {
    double* cp = C + i * ldc;
    if (accumulate) {
      c0[i] = _mm512_add_pd(c0[i], _mm512_maskz_loadu_pd(m0, cp));
      c1[i] = _mm512_add_pd(c1[i], _mm512_maskz_loadu_pd(m1, cp + 8));
    }
    _mm512_mask_storeu_pd(cp, m0, c0[i]);
    _mm512_mask_storeu_pd(cp + 8, m1, c1[i]);
  }
}

using Micro = void (*)(int64_t, const double*, int64_t, const double*, double*, int64_t, int64_t, bool);

template <int... MR>
constexpr std::array<Micro, sizeof...(MR) + 1> micro_table(std::integer_sequence<int, MR...>) {
  return {nullptr, &micro<MR + 1>...};
}

}  // namespace

void panel_gemm_avx512(int64_t rows, int64_t K, const double* A, int64_t lda, const double* panels, int64_t q0,
                       int64_t q1, int64_t N, double* C, int64_t ldc, bool accumulate) {
  static constexpr auto table = micro_table(std::make_integer_sequence<int, kMaxRows>());
  if (rows <= 0) return;
  const int64_t blocks = (rows + kMaxRows - 1) / kMaxRows, base = rows / blocks, extra = rows % blocks;
  for (int64_t q = q0; q < q1; ++q) {
    const int64_t n = std::min(kPanelCols, N - q * kPanelCols);
    const double* panel = panels + q * K * kPanelCols;
    for (int64_t b = 0, i = 0; b < blocks; ++b) {
      const int mr = static_cast<int>(base + (b < extra ? 1 : 0));
      table[mr](K, A + i * lda, lda, panel, C + i * ldc + q * kPanelCols, ldc, n, accumulate);
      i += mr;
    }
  }
}

}  // namespace a3ext::cpu
