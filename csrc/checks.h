// Input validation shared by the CPU and CUDA kernels: every message names the op, the
// argument, the expected and the actual value (a3ext/ops.py raises the same
// messages from the fake kernels).
#pragma once
#include <ATen/ATen.h>

#include <string>

namespace a3ext {

inline std::string dtype_name(const at::Tensor& t) {
  switch (t.scalar_type()) {  // spelled as Python users know them
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
    case at::kComplexFloat: return "torch.complex64";
    case at::kComplexDouble: return "torch.complex128";
    default: return std::string("torch.") + c10::toString(t.scalar_type());
  }
}

// t must be float32 or float64.
inline void check_float(const char* op, const at::Tensor& t, const char* name) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op, ": ",
                   name, " must be torch.float32 or torch.float64, but got ", dtype_name(t));
}

// t must be floating point, with the dtype and device of ref.
inline void check_same(const char* op, const at::Tensor& ref, const char* ref_name,
                       const at::Tensor& t, const char* name) {
  TORCH_CHECK_TYPE(t.is_floating_point(), op, ": ", name,
                   " must be a floating-point tensor (torch.float32 or torch.float64), but got ",
                   dtype_name(t));
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), op,
                   ": all inputs must have the same dtype, but ", name, " is ", dtype_name(t),
                   " while ", ref_name, " is ", dtype_name(ref));
  TORCH_CHECK_VALUE(t.device() == ref.device(), op, ": all inputs must be on the same device, but ",
                    name, " is on ", t.device(), " while ", ref_name, " is on ", ref.device());
}

inline void check_shape(const char* op, const at::Tensor& t, const char* name,
                        at::IntArrayRef expected, const char* expected_str) {
  TORCH_CHECK_VALUE(t.sizes() == expected, op, ": expected ", name, " of shape ", expected_str,
                    " = ", expected, ", but got ", t.sizes());
}

}  // namespace a3ext
