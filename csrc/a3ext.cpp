// a3ext: operator schemas (one place for the whole op API) and the Python module stub.
//
// Kernels live in csrc/cpu/*.cpp (and csrc/cuda/*.cu), each registering only a
// TORCH_LIBRARY_IMPL block. Fake kernels and autograd formulas are registered
// from Python (a3ext/ops.py). No tensor ever crosses pybind11: importing the
// module `a3ext._C` just loads this library so the registrations run.
#include <Python.h>
#include <torch/library.h>

#include <optional>
#include <string>
#include <tuple>

#include "cpu/config.h"
#include "gram_common.h"
#include "rnn_common.h"

#ifndef A3EXT_TORCH_VERSION
#define A3EXT_TORCH_VERSION "unknown"
#endif

namespace {
// True when the calling thread holds the Python GIL. Used by the tests to prove
// that ops invoked through torch.ops run with the GIL released.
bool gil_held() { return PyGILState_Check() != 0; }
}  // namespace

TORCH_LIBRARY(a3ext, m) {
  // ---- vanilla tanh RNN, batch-major: x (N,T,D), h0 (N,H), Wx (D,H), Wh (H,H), b (H) -> h (N,T,H)
  m.def("rnn_forward(Tensor x, Tensor h0, Tensor Wx, Tensor Wh, Tensor b) -> Tensor");
  // Gradients of every input given dh (N,T,H), the upstream gradient of every hidden state.
  m.def(
      "rnn_backward(Tensor dh, Tensor x, Tensor h0, Tensor Wx, Tensor Wh, Tensor h)"
      " -> (Tensor dx, Tensor dh0, Tensor dWx, Tensor dWh, Tensor db)");
  // ---- LSTM, gate order i, f, o, g: Wx (D,4H), Wh (H,4H), b (4H).
  // Returns h (N,T,H), every cell state c (N,T,H) and the activated gates (N,T,4H)
  // that the backward pass reuses.
  m.def(
      "lstm_forward(Tensor x, Tensor h0, Tensor c0, Tensor Wx, Tensor Wh, Tensor b)"
      " -> (Tensor h, Tensor c, Tensor gates)");
  // dh / dc: upstream gradients of every hidden / cell state (None = zero).
  m.def(
      "lstm_backward(Tensor? dh, Tensor? dc, Tensor x, Tensor h0, Tensor c0, Tensor Wx,"
      " Tensor Wh, Tensor h, Tensor c, Tensor gates)"
      " -> (Tensor dx, Tensor dh0, Tensor dc0, Tensor dWx, Tensor dWh, Tensor db)");
  // ---- the same on packed sequences (torch.nn.utils.rnn.PackedSequence layout):
  // x (P,D) time-major, step t = the first batch_sizes[t] sequences (batch_sizes:
  // int64 CPU, non-increasing), h0 / c0 (B,H) -> h, c (P,H), gates (P,4H). No work
  // is spent on padding. CPU kernels only.
  m.def("rnn_packed_forward(Tensor x, Tensor batch_sizes, Tensor h0, Tensor Wx, Tensor Wh, Tensor b) -> Tensor");
  m.def(
      "rnn_packed_backward(Tensor dh, Tensor x, Tensor batch_sizes, Tensor h0, Tensor Wx, Tensor Wh,"
      " Tensor h) -> (Tensor dx, Tensor dh0, Tensor dWx, Tensor dWh, Tensor db)");
  m.def(
      "lstm_packed_forward(Tensor x, Tensor batch_sizes, Tensor h0, Tensor c0, Tensor Wx, Tensor Wh,"
      " Tensor b) -> (Tensor h, Tensor c, Tensor gates)");
  m.def(
      "lstm_packed_backward(Tensor? dh, Tensor? dc, Tensor x, Tensor batch_sizes, Tensor h0,"
      " Tensor c0, Tensor Wx, Tensor Wh, Tensor h, Tensor c, Tensor gates)"
      " -> (Tensor dx, Tensor dh0, Tensor dc0, Tensor dWx, Tensor dWh, Tensor db)");
  // ---- Gram matrix: features (N,C,H,W) -> G (N,C,C) = F F^T / (C*H*W if normalize)
  m.def("gram_forward(Tensor features, bool normalize=True) -> Tensor");
  // dF = s (grad + grad^T) F, for any (not necessarily symmetric) upstream grad.
  m.def("gram_backward(Tensor grad, Tensor features, bool normalize) -> Tensor");
  m.def("_gil_held() -> bool", &gil_held);
  // Instruction set the CPU pointwise kernels run with (DEFAULT, AVX2, AVX512).
  m.def("_cpu_isa() -> str", [] { return std::string(a3ext::cpu::rnn_pointwise_isa()); });
  // GEMM engine of the CPU time loops ('auto', 'blas', 'onednn'); returns the previous one.
  m.def("_set_gemm_backend(str backend) -> str", &a3ext::cpu::set_gemm_backend);
}

// ---- Every call the backend kernels cannot take gets the ops' own error ----
// A CompositeExplicitAutograd kernel serves every backend key without a kernel
// of its own (sparse, mkldnn, quantized, a device this build has no kernels
// for) and calls with no tensor at all (every tensor None); nested tensors get
// the same kernels under their own keys. Instead of
// the dispatcher's list of backends, it runs the op's checks (None, "must be a
// dense tensor", dtypes, shapes: the messages of the CPU kernels and of the
// fake kernels) and, if they pass, names the device that has no kernel.
namespace {
using a3ext::Tensor;

#ifdef A3EXT_WITH_CUDA
constexpr const char* kPaddedDevices = "CPU and CUDA";
#else
constexpr const char* kPaddedDevices = "CPU (this build has no CUDA kernels)";
#endif

[[noreturn]] void no_kernel(const char* op, const Tensor& x, const char* devices) {
  TORCH_CHECK_NOT_IMPLEMENTED(false, op, ": expected x on a device with a3ext kernels (", devices,
                              "), but got x on ", x.device());
}

Tensor rnn_forward_fallback(const Tensor& x, const Tensor& h0, const Tensor& Wx, const Tensor& Wh,
                            const Tensor& b) {
  a3ext::check_forward_inputs("a3ext.rnn", x, h0, Wx, Wh, &b, 1);
  no_kernel("a3ext.rnn", x, kPaddedDevices);
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> rnn_backward_fallback(const Tensor& dh, const Tensor& x,
                                                                         const Tensor& h0, const Tensor& Wx,
                                                                         const Tensor& Wh, const Tensor& h) {
  a3ext::check_rnn_backward_inputs(dh, x, h0, Wx, Wh, h);
  no_kernel("a3ext.rnn_backward", x, kPaddedDevices);
}

std::tuple<Tensor, Tensor, Tensor> lstm_forward_fallback(const Tensor& x, const Tensor& h0, const Tensor& c0,
                                                         const Tensor& Wx, const Tensor& Wh, const Tensor& b) {
  a3ext::check_lstm_forward_inputs(x, h0, c0, Wx, Wh, b);
  no_kernel("a3ext.lstm", x, kPaddedDevices);
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_backward_fallback(
    const std::optional<Tensor>& dh, const std::optional<Tensor>& dc, const Tensor& x, const Tensor& h0,
    const Tensor& c0, const Tensor& Wx, const Tensor& Wh, const Tensor& h, const Tensor& c, const Tensor& gates) {
  a3ext::check_lstm_backward_inputs(a3ext::defined_or_empty(dh), a3ext::defined_or_empty(dc), x, h0, c0, Wx, Wh,
                                    h, c, gates);
  no_kernel("a3ext.lstm_backward", x, kPaddedDevices);
}

constexpr const char* kPackedDevices = "CPU only, for the packed ops";

Tensor rnn_packed_forward_fallback(const Tensor& x, const Tensor& batch_sizes, const Tensor& h0, const Tensor& Wx,
                                   const Tensor& Wh, const Tensor& b) {
  a3ext::check_packed_inputs("a3ext.rnn_packed", x, batch_sizes, h0, Wx, Wh, &b, 1);
  no_kernel("a3ext.rnn_packed", x, kPackedDevices);
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> rnn_packed_backward_fallback(
    const Tensor& dh, const Tensor& x, const Tensor& batch_sizes, const Tensor& h0, const Tensor& Wx,
    const Tensor& Wh, const Tensor& h) {
  a3ext::check_rnn_packed_backward_inputs(dh, x, batch_sizes, h0, Wx, Wh, h);
  no_kernel("a3ext.rnn_packed_backward", x, kPackedDevices);
}

std::tuple<Tensor, Tensor, Tensor> lstm_packed_forward_fallback(const Tensor& x, const Tensor& batch_sizes,
                                                                const Tensor& h0, const Tensor& c0,
                                                                const Tensor& Wx, const Tensor& Wh,
                                                                const Tensor& b) {
  a3ext::check_lstm_packed_forward_inputs(x, batch_sizes, h0, c0, Wx, Wh, b);
  no_kernel("a3ext.lstm_packed", x, kPackedDevices);
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_packed_backward_fallback(
    const std::optional<Tensor>& dh, const std::optional<Tensor>& dc, const Tensor& x, const Tensor& batch_sizes,
    const Tensor& h0, const Tensor& c0, const Tensor& Wx, const Tensor& Wh, const Tensor& h, const Tensor& c,
    const Tensor& gates) {
  a3ext::check_lstm_packed_backward_inputs(a3ext::defined_or_empty(dh), a3ext::defined_or_empty(dc), x,
                                           batch_sizes, h0, c0, Wx, Wh, h, c, gates);
  no_kernel("a3ext.lstm_packed_backward", x, kPackedDevices);
}

Tensor gram_forward_fallback(const Tensor& features, bool normalize) {
  a3ext::check_gram_features("a3ext.gram", features);
  TORCH_CHECK_NOT_IMPLEMENTED(false, "a3ext.gram: expected features on a device with a3ext kernels (",
                              kPaddedDevices, "), but got features on ", features.device());
}

Tensor gram_backward_fallback(const Tensor& grad, const Tensor& features, bool normalize) {
  a3ext::check_gram_backward_inputs("a3ext.gram_backward", grad, features);
  TORCH_CHECK_NOT_IMPLEMENTED(false, "a3ext.gram_backward: expected features on a device with a3ext kernels (",
                              kPaddedDevices, "), but got features on ", features.device());
}
}  // namespace

static void register_fallbacks(torch::Library& m) {
  m.impl("rnn_forward", &rnn_forward_fallback);
  m.impl("rnn_backward", &rnn_backward_fallback);
  m.impl("lstm_forward", &lstm_forward_fallback);
  m.impl("lstm_backward", &lstm_backward_fallback);
  m.impl("rnn_packed_forward", &rnn_packed_forward_fallback);
  m.impl("rnn_packed_backward", &rnn_packed_backward_fallback);
  m.impl("lstm_packed_forward", &lstm_packed_forward_fallback);
  m.impl("lstm_packed_backward", &lstm_packed_backward_fallback);
  m.impl("gram_forward", &gram_forward_fallback);
  m.impl("gram_backward", &gram_backward_fallback);
}

TORCH_LIBRARY_IMPL(a3ext, CompositeExplicitAutograd, m) { register_fallbacks(m); }
// Nested tensors' keys are outside CompositeExplicitAutograd's set.
TORCH_LIBRARY_IMPL(a3ext, NestedTensorCPU, m) { register_fallbacks(m); }
TORCH_LIBRARY_IMPL(a3ext, NestedTensorCUDA, m) { register_fallbacks(m); }
// The backward ops have no autograd kernel, and nested tensors no fallback for
// a missing one (the forward ops' autograd kernel comes from a3ext/ops.py).
TORCH_LIBRARY_IMPL(a3ext, AutogradNestedTensor, m) {
  m.impl("rnn_backward", &rnn_backward_fallback);
  m.impl("lstm_backward", &lstm_backward_fallback);
  m.impl("rnn_packed_backward", &rnn_packed_backward_fallback);
  m.impl("lstm_packed_backward", &lstm_packed_backward_fallback);
  m.impl("gram_backward", &gram_backward_fallback);
}

extern "C" {
static PyModuleDef a3ext_module = {PyModuleDef_HEAD_INIT, "_C",
                                   "a3ext compiled ops (registered with torch.library)", -1,
                                   nullptr};

PyMODINIT_FUNC PyInit__C(void) {
  PyObject* mod = PyModule_Create(&a3ext_module);
  if (mod == nullptr) return nullptr;
  if (PyModule_AddStringConstant(mod, "torch_version", A3EXT_TORCH_VERSION) < 0) {
    Py_DECREF(mod);
    return nullptr;
  }
  return mod;
}
}
