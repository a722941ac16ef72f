// a3ext's own GEMM for the recurrent products of the RNN / LSTM time loops
// (panel_gemm.cpp): the "own" engine of those ops, float64, AVX-512.
//
// A time step multiplies a few dozen rows (the batch) by a weight that stays the
// same for the whole sequence: h_{t-1} @ Wh forward, dpre_t @ Wh^T backward. MKL's
// dgemm packs that weight again on every call (float64 has no packed-GEMM API): at
// (50 x 512) @ (512 x 2048) the copy is about a third of the call (270 of 830 us
// on 2 cores, from the call's time against its row count). Here the weight is
// packed once per op call into panels of 16 columns (PanelWeight, from the
// workspace pool) and every step runs a register-blocked micro-kernel on them.
#pragma once
#include <cstdint>

namespace a3ext::cpu {

// Columns per packed panel (two AVX-512 registers of float64).
constexpr int64_t kPanelCols = 16;
inline int64_t panel_count(int64_t N) { return (N + kPanelCols - 1) / kPanelCols; }

// panels (panel_count(N) x K x kPanelCols, zero padded) from B (K x N): B = W (K x N,
// row stride ld) or, trans, B = W^T for W (N x K, row stride ld). Panels
// [q0, q1) only, so that threads can pack disjoint ranges. Defined only when
// A3EXT_HAVE_AVX512.
void panel_pack(const double* W, int64_t K, int64_t N, int64_t ld, bool trans, double* panels, int64_t q0,
                int64_t q1);

// C[:, columns of panels q0..q1) = A (rows x K, row stride lda) @ B, plus C if
// accumulate; C has N columns (the last panel's padding is never written), row
// stride ldc. On the calling thread. Defined only when A3EXT_HAVE_AVX512.
void panel_gemm_avx512(int64_t rows, int64_t K, const double* A, int64_t lda, const double* panels, int64_t q0,
                       int64_t q1, int64_t N, double* C, int64_t ldc, bool accumulate);

}  // namespace a3ext::cpu
