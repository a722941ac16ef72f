// The two GEMM engines of the CPU kernels and the switch between them.
//
// BLAS   the Fortran BLAS that libtorch exports (MKL on x86 wheels), called
//        directly (blas.h): no dispatcher overhead, strided operands, alpha and
//        beta folded in; float32 and float64.
// oneDNN float32 only: oneDNN's GEMM (what torch.nn.LSTM and torch's linear
//        layers run on CPU), called through the dispatcher as
//        mkldnn::_linear_pointwise. On this project's machines (AMD EPYC) MKL
//        reaches 104 GFLOP/s on a 25x512 @ 512x2048 product where oneDNN
//        reaches 168, and 175 against 205 on 128x512 @ 512x2048.
// `auto` lets each op pick oneDNN for float32 work big enough to pay for its
// call overhead; `blas` and `onednn` force one engine (tests run both).
#pragma once
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <optional>
#include <string>

namespace a3ext::cpu {

class OneDnnLinear {
 public:
  static const OneDnnLinear& get() {
    static const OneDnnLinear instance;
    return instance;
  }
  bool available() const {
    return op_.has_value() && at::hasMKLDNN() && at::globalContext().userEnabledMkldnn();
  }
  // x (M, K) @ w (N, K)^T (+ b (N,)) -> new contiguous (M, N). x and w may be
  // strided views (a transposed weight view costs no more than a copy would).
  at::Tensor operator()(const at::Tensor& x, const at::Tensor& w,
                        const std::optional<at::Tensor>& b = std::nullopt) const {
    torch::jit::Stack stack;
    stack.reserve(6);
    stack.emplace_back(x);
    stack.emplace_back(w);
    stack.emplace_back(b.has_value() ? c10::IValue(*b) : c10::IValue());
    stack.emplace_back(std::string("none"));
    stack.emplace_back(c10::List<std::optional<at::Scalar>>());
    stack.emplace_back(std::string(""));
    op_->callBoxed(&stack);
    return stack[0].toTensor();
  }

 private:
  OneDnnLinear()
      : op_(c10::Dispatcher::singleton().findSchema({"mkldnn::_linear_pointwise", ""})) {}
  std::optional<c10::OperatorHandle> op_;
};

// Whether an op should use oneDNN for work of this dtype; `worth_it` is the
// op's own judgement of whether the work is big enough (used in `auto` mode).
bool use_onednn_gemm(at::ScalarType dtype, bool worth_it);

}  // namespace a3ext::cpu
