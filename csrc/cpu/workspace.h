// Temporary buffers of the CPU kernels, reused across calls.
//
// A buffer of a few MB freshly taken from the system costs a page fault per
// 4 KB page on first touch. glibc returns large freed blocks to the system, so
// every call of an op that allocates its temporaries anew pays them again: the
// float32 LSTM backward at (50, 16, 256, 512) took 3,500 page faults per call,
// 15-18 % of its time. The temporaries that never leave an op (the packed
// weights, the gate gradients, the shifted hidden states) therefore come from a
// small process-wide pool instead; the outputs an op returns are fresh tensors
// as always.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>

namespace a3ext::cpu {

// A 64-byte aligned buffer of at least `bytes` bytes (a uint8 tensor, torch's
// allocator) from the pool, or a new one; give it back when done. The pool keeps
// at most kWorkspacePoolBuffers buffers and kWorkspacePoolBytes bytes, dropping
// the oldest beyond that.
at::Tensor take_workspace(int64_t bytes);
void give_back_workspace(at::Tensor buffer);
constexpr int64_t kWorkspacePoolBuffers = 8;
constexpr int64_t kWorkspacePoolBytes = int64_t(256) << 20;

// An uninitialised contiguous tensor of `shape` and `dtype` whose memory comes
// from the pool and goes back to it when the Workspace is destroyed (unless a
// tensor sharing that memory is still alive: then it is left to them). Never
// return tensor() or a view of it from an op.
class Workspace {
 public:
  Workspace(at::IntArrayRef shape, at::ScalarType dtype);
  ~Workspace();
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  const at::Tensor& tensor() const { return tensor_; }

 private:
  at::Tensor bytes_, tensor_;
};

}  // namespace a3ext::cpu
