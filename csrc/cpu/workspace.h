// Temporary buffers of the CPU kernels, reused across calls.
//
// A buffer of a few MB freshly taken from the system costs a page fault per
// 4 KB page on first touch, and glibc often hands large freed blocks back to the
// system (whether it does depends on its dynamic mmap threshold), so an op that
// allocates its temporaries anew on every call can pay those faults on every
// call: the float32 LSTM backward at (50, 16, 256, 512) took 3,500 page faults
// per call, 15-18 % of its time. The temporaries that never leave an op (the
// gate gradients, the shifted hidden states, MKL's packed weights) therefore
// come from a small process-wide pool instead; the outputs an op returns are
// fresh tensors as always.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>

namespace a3ext::cpu {

// At most this many free buffers and bytes stay pooled (the oldest are dropped
// beyond that; a buffer larger than the byte limit is never pooled).
constexpr int64_t kWorkspacePoolBuffers = 8;
constexpr int64_t kWorkspacePoolBytes = int64_t(256) << 20;

// A 64-byte aligned buffer of at least `bytes` bytes (a uint8 tensor, torch's
// allocator): the smallest pooled one that is large enough but not more than
// twice as large (plus 64 KB), or a new one.
at::Tensor take_workspace(int64_t bytes);
// Returns a buffer to the pool, unless other tensors still share its memory
// (then it is left to them and counted, see workspace_stats in workspace.cpp).
void give_back_workspace(at::Tensor buffer) noexcept;

// An uninitialised contiguous tensor of `shape` and `dtype` whose memory comes
// from the pool and goes back to it when the Workspace is destroyed (unless a
// tensor sharing that memory is still alive). Never return tensor() or a view
// of it from an op.
class Workspace {
 public:
  Workspace(at::IntArrayRef shape, at::ScalarType dtype);
  ~Workspace();
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  const at::Tensor& tensor() const { return tensor_; }

  // n elements of type T, and their memory.
  template <typename T>
  static Workspace elements(int64_t n) {
    return Workspace({n}, c10::CppTypeToScalarType<T>::value);
  }
  template <typename T>
  T* data() const {
    return tensor_.mutable_data_ptr<T>();
  }

 private:
  at::Tensor bytes_, tensor_;
};

}  // namespace a3ext::cpu
