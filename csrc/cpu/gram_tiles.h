// a3ext's own Gram kernel, float32 and float64 (gram_tiles.cpp): the "own" GEMM engine of
// a3ext.gram. Built only into the AVX512 object library; gram_kernel.cpp runs it
// on its threads.
#pragma once
#include <cstdint>

namespace a3ext::cpu {

// C rounded up to 16: the side of the accumulation buffer Gt.
int64_t gram_own_padded(int64_t C);

// Pixels per packed panel for C channels of elem_size bytes (the smallest useful
// range per thread).
int64_t gram_own_panel_pixels(int64_t C, int64_t elem_size);

// Gt (Cp x Cp, Cp = gram_own_padded(C)) += F F^T for F (C, M) with row stride ldf,
// on the calling thread: entry (i, j), i <= j, lands in Gt[j * Cp + i] (the
// diagonal blocks' other entries too; the rest of Gt is untouched).
// Defined only when A3EXT_HAVE_AVX512.
void gram_own_accumulate_avx512(const float* F, int64_t C, int64_t ldf, int64_t M, float* Gt);
void gram_own_accumulate_avx512(const double* F, int64_t C, int64_t ldf, int64_t M, double* Gt);

// Whether the "own" engine runs here: this build has the AVX-512 kernel and ATen's
// CPU capability (ATEN_CPU_CAPABILITY honoured) is AVX512.
bool own_gram_available();

}  // namespace a3ext::cpu
