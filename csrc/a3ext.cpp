// a3ext: operator schemas (one place for the whole op API) and the Python module stub.
//
// Kernels live in csrc/cpu/*.cpp (and csrc/cuda/*.cu), each registering only a
// TORCH_LIBRARY_IMPL block. Fake kernels and autograd formulas are registered
// from Python (a3ext/ops.py). No tensor ever crosses pybind11: importing the
// module `a3ext._C` just loads this library so the registrations run.
#include <Python.h>
#include <torch/library.h>

#include <string>

#include "cpu/config.h"

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
