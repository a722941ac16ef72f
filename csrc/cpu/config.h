// Run-time configuration of the CPU kernels, exposed as small ops for tests and
// benchmarks (schemas in csrc/a3ext.cpp).
#pragma once
#include <string>

namespace a3ext::cpu {

// Instruction set the pointwise passes run with: "DEFAULT", "AVX2" or "AVX512".
const char* rnn_pointwise_isa();

// GEMM engine of the CPU ops (see gemm_engine.h): "auto", "blas", "onednn", "mkl",
// "blas_batch" or "own".
// Returns the previous setting.
std::string set_gemm_backend(const std::string& backend);

}  // namespace a3ext::cpu
