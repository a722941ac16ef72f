// Input validation shared by the CPU and CUDA kernels: every message names the op, the
// argument, the expected and the actual value (a3ext/ops.py raises the same
// messages from the fake kernels, in the same order).
#pragma once
#include <ATen/ATen.h>
#include <c10/util/safe_numerics.h>

#include <cstdint>
#include <initializer_list>
#include <string>

namespace a3ext {

inline std::string dtype_name(at::ScalarType s) {
  switch (s) {  // spelled as Python users know them
    case at::kFloat: return "torch.float32";
    case at::kDouble: return "torch.float64";
    case at::kHalf: return "torch.float16";
    case at::kBFloat16: return "torch.bfloat16";
    case at::kLong: return "torch.int64";
    case at::kInt: return "torch.int32";
    case at::kShort: return "torch.int16";
    case at::kChar: return "torch.int8";
    case at::kByte: return "torch.uint8";
    case at::kBool: return "torch.bool";
    case at::kComplexHalf: return "torch.complex32";
    case at::kComplexFloat: return "torch.complex64";
    case at::kComplexDouble: return "torch.complex128";
    case at::kQInt8: return "torch.qint8";
    case at::kQUInt8: return "torch.quint8";
    case at::kQInt32: return "torch.qint32";
    case at::kUInt16: return "torch.uint16";
    case at::kUInt32: return "torch.uint32";
    case at::kUInt64: return "torch.uint64";
    case at::kFloat8_e4m3fn: return "torch.float8_e4m3fn";
    case at::kFloat8_e5m2: return "torch.float8_e5m2";
    default: return std::string("torch.") + c10::toString(s);
  }
}
inline std::string dtype_name(const at::Tensor& t) { return dtype_name(t.scalar_type()); }

// The kind of a tensor that is not dense and strided, as Python prints it.
inline std::string layout_name(const at::Tensor& t) {
  if (t.is_nested()) return "nested";
  switch (t.layout()) {
    case at::kStrided: return "torch.strided";
    case at::kSparse: return "torch.sparse_coo";
    case at::kSparseCsr: return "torch.sparse_csr";
    case at::kSparseCsc: return "torch.sparse_csc";
    case at::kSparseBsr: return "torch.sparse_bsr";
    case at::kSparseBsc: return "torch.sparse_bsc";
    case at::kMkldnn: return "torch._mkldnn";
    case at::kJagged: return "torch.jagged";
    default: return "non-strided";
  }
}

// t is given (not None) and a dense strided tensor. optional: None is allowed.
inline void check_tensor(const char* op, const at::Tensor& t, const char* name, bool optional = false) {
  if (!t.defined()) {
    TORCH_CHECK_TYPE(optional, op, ": ", name, " is required, got None");
    return;
  }
  TORCH_CHECK_TYPE(t.layout() == at::kStrided && !t.is_nested(), op, ": ", name,
                   " must be a dense tensor (torch.strided layout), but got a ", layout_name(t), " tensor");
}

struct NamedTensor {
  const at::Tensor& t;
  const char* name;
  bool optional = false;
};

// check_tensor for every tensor argument of an op, in the schema's order: run
// first, so that None and sparse / mkldnn / nested tensors get this error
// whatever else is wrong.
inline void check_tensors(const char* op, std::initializer_list<NamedTensor> args) {
  for (const NamedTensor& a : args) check_tensor(op, a.t, a.name, a.optional);
}

// t must be float32 or float64.
inline void check_float(const char* op, const at::Tensor& t, const char* name) {
  check_tensor(op, t, name);
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op, ": ",
                   name, " must be torch.float32 or torch.float64, but got ", dtype_name(t));
}

// t must be floating point, with the dtype and device of ref.
inline void check_same(const char* op, const at::Tensor& ref, const char* ref_name,
                       const at::Tensor& t, const char* name) {
  check_tensor(op, t, name);
  TORCH_CHECK_TYPE(t.is_floating_point(), op, ": ", name,
                   " must be a floating-point tensor (torch.float32 or torch.float64), but got ",
                   dtype_name(t));
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), op,
                   ": all inputs must have the same dtype, but ", name, " is ", dtype_name(t),
                   " while ", ref_name, " is ", dtype_name(ref));
  TORCH_CHECK_VALUE(t.device() == ref.device(), op, ": all inputs must be on the same device, but ",
                    name, " is on ", t.device(), " while ", ref_name, " is on ", ref.device());
}

// note: appended to the message, e.g. " (D from x, H from h0)".
inline void check_shape(const char* op, const at::Tensor& t, const char* name,
                        at::IntArrayRef expected, const char* expected_str, const char* note = "") {
  TORCH_CHECK_VALUE(t.sizes() == expected, op, ": expected ", name, " of shape ", expected_str,
                    " = ", expected, ", but got ", t.sizes(), note);
}

// The size in bytes of a tensor of this shape, or -1 when it overflows int64
// (0 when any size is 0, however large the others).
inline int64_t checked_nbytes(at::IntArrayRef shape, int64_t itemsize) {
  for (int64_t s : shape)
    if (s == 0) return 0;
  uint64_t n = static_cast<uint64_t>(itemsize);
  for (int64_t s : shape)
    if (c10::mul_overflows(n, static_cast<uint64_t>(s), &n)) return -1;
  return n > static_cast<uint64_t>(INT64_MAX) ? -1 : static_cast<int64_t>(n);
}

// An output (or work buffer) of this shape has a size in bytes that int64 can
// hold (every kernel allocates it; torch's own error would not name the op).
// from: the inputs its sizes come from, e.g. "x and h0".
inline void check_output_size(const char* op, const char* what, at::IntArrayRef shape,
                              const char* shape_str, const at::Tensor& like, const char* from) {
  TORCH_CHECK_VALUE(checked_nbytes(shape, static_cast<int64_t>(like.element_size())) >= 0, op, ": ", what,
                    " of shape ", shape_str, " = ", shape,
                    " would be too large: its size in bytes overflows int64; expected smaller sizes, but got them from ",
                    from);
}

}  // namespace a3ext
