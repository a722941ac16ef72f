#include "workspace.h"

#include <c10/util/strides.h>
#include <torch/library.h>

#include <algorithm>
#include <deque>
#include <mutex>
#include <sstream>
#include <string>

namespace a3ext::cpu {
namespace {
std::mutex g_mutex;
std::deque<at::Tensor> g_pool;  // free buffers, oldest first
int64_t g_pool_bytes = 0;
// buffers asked for, served from the pool, and not given back because still shared
int64_t g_taken = 0, g_reused = 0, g_kept = 0;
}  // namespace

at::Tensor take_workspace(int64_t bytes) {
  bytes = std::max<int64_t>(bytes, 1);
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    ++g_taken;
    // the smallest free buffer that is large enough and not much larger
    auto best = g_pool.end();
    for (auto it = g_pool.begin(); it != g_pool.end(); ++it)
      if (it->numel() >= bytes && it->numel() <= 2 * bytes + (64 << 10) &&
          (best == g_pool.end() || it->numel() < best->numel()))
        best = it;
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

void give_back_workspace(at::Tensor buffer) noexcept {
  try {
    if (!buffer.defined()) return;
    std::lock_guard<std::mutex> lock(g_mutex);
    if (buffer.use_count() != 1 || buffer.storage().use_count() != 1) {
      ++g_kept;  // still shared: leave the memory to its holders
      return;
    }
    if (buffer.numel() > kWorkspacePoolBytes) return;
    g_pool_bytes += buffer.numel();
    g_pool.push_back(std::move(buffer));
    while (static_cast<int64_t>(g_pool.size()) > kWorkspacePoolBuffers || g_pool_bytes > kWorkspacePoolBytes) {
      g_pool_bytes -= g_pool.front().numel();
      g_pool.pop_front();
    }
  } catch (...) {
    // out of memory for the pool's bookkeeping: the buffer is simply freed
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
  give_back_workspace(std::move(bytes_));
}

namespace {
// "taken reused kept buffers bytes": buffers asked for, served from the pool, and
// not given back because a tensor still shared them (an op returned pooled
// memory: a bug) since the process started; the pool's free buffers and bytes now.
std::string workspace_stats() {
  std::lock_guard<std::mutex> lock(g_mutex);
  std::ostringstream out;
  out << g_taken << ' ' << g_reused << ' ' << g_kept << ' ' << g_pool.size() << ' ' << g_pool_bytes;
  return out.str();
}

// Frees the pooled buffers (the memory the pool holds between calls).
void clear_workspaces() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_pool.clear();
  g_pool_bytes = 0;
}
}  // namespace

TORCH_LIBRARY_FRAGMENT(a3ext, m) {
  m.def("_workspace_stats() -> str", &workspace_stats);
  m.def("_clear_workspaces() -> ()", &clear_workspaces);
}

}  // namespace a3ext::cpu
