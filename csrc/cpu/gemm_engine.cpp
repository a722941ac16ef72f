#include "gemm_engine.h"

#include <atomic>

#include "config.h"

namespace a3ext::cpu {
namespace {
std::atomic<int> g_gemm_backend{0};  // index into kBackendNames
constexpr const char* kBackendNames[] = {"auto", "blas", "onednn"};
}  // namespace

bool use_onednn_gemm(at::ScalarType dtype, bool worth_it) {
  const int backend = g_gemm_backend.load();
  if (backend == 1 || dtype != at::kFloat) return false;
  const bool available = OneDnnLinear::get().available();
  if (backend == 2) {
    TORCH_CHECK(available,
                "a3ext: the 'onednn' GEMM backend was requested but this torch has no usable "
                "oneDNN (torch.backends.mkldnn)");
    return true;
  }
  return available && worth_it;
}

std::string set_gemm_backend(const std::string& backend) {
  for (int i = 0; i < 3; ++i) {
    if (backend == kBackendNames[i]) return kBackendNames[g_gemm_backend.exchange(i)];
  }
  TORCH_CHECK_VALUE(false, "a3ext: unknown GEMM backend '", backend,
                    "'; expected one of 'auto', 'blas', 'onednn'");
}

}  // namespace a3ext::cpu
