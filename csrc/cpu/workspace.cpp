#include "workspace.h"

#include <c10/util/strides.h>
#include <torch/library.h>

#include <sstream>

#include <deque>
#include <mutex>

namespace a3ext::cpu {
namespace {
std::mutex g_mutex;
std::deque<at::Tensor> g_pool;  // free buffers, oldest first
int64_t g_pool_bytes = 0;
int64_t g_taken = 0, g_reused = 0;  // buffers asked for, and served from the pool
}  // namespace

at::Tensor take_workspace(int64_t bytes) {
  bytes = std::max<int64_t>(bytes, 1);
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    ++g_taken;
    // the smallest free buffer that is large enough
    auto best = g_pool.end();
    for (auto it = g_pool.begin(); it != g_pool.end(); ++it)
      if (it->numel() >= bytes && (best == g_pool.end() || it->numel() < best->numel())) best = it;
    if (best != g_pool.end()) {
      at::Tensor t = std::move(*best);
      g_pool.erase(best);
      g_pool_bytes -= t.numel();
      ++g_reused;
      return t;
    }
  }
  return at::empty({bytes}, at::kByte);
}

void give_back_workspace(at::Tensor buffer) {
  if (!buffer.defined() || buffer.numel() > kWorkspacePoolBytes) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  g_pool_bytes += buffer.numel();
  g_pool.push_back(std::move(buffer));
  while (static_cast<int64_t>(g_pool.size()) > kWorkspacePoolBuffers || g_pool_bytes > kWorkspacePoolBytes) {
    g_pool_bytes -= g_pool.front().numel();
    g_pool.pop_front();
  }
}

Workspace::Workspace(at::IntArrayRef shape, at::ScalarType dtype) {
  int64_t numel = 1;
  for (const int64_t s : shape) numel *= s;
  const int64_t item = static_cast<int64_t>(c10::elementSize(dtype));
  bytes_ = take_workspace(numel * item);
  // the bytes' own storage, seen as `dtype`
  tensor_ = at::empty({0}, bytes_.options().dtype(dtype))
                .set_(bytes_.storage(), 0, shape, c10::contiguous_strides(shape));
}

Workspace::~Workspace() {
  tensor_ = at::Tensor();
  // still shared (a view kept somewhere): leave the memory to its holders
  if (bytes_.use_count() == 1 && bytes_.storage().use_count() == 1) give_back_workspace(std::move(bytes_));
}

namespace {
// "taken reused buffers bytes": buffers asked for and served from the pool since
// the process started, and the pool's free buffers and bytes now (tests).
std::string workspace_stats() {
  std::lock_guard<std::mutex> lock(g_mutex);
  std::ostringstream out;
  out << g_taken << ' ' << g_reused << ' ' << g_pool.size() << ' ' << g_pool_bytes;
  return out.str();
}
}  // namespace

TORCH_LIBRARY_FRAGMENT(a3ext, m) { m.def("_workspace_stats() -> str", &workspace_stats); }

}  // namespace a3ext::cpu
