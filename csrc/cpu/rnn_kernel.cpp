// CPU kernels of the vanilla RNN and LSTM ops (schemas in csrc/a3ext.cpp).
//
// Schedule, as in the fastest RNN libraries (haste, cuDNN, onnxruntime):
//  forward   one GEMM projects the inputs of all N*T rows at once (bias folded
//            in); the time loop then does, per step, one recurrent GEMM that
//            accumulates into that buffer in place (beta = 1) and one fused,
//            vectorized pointwise pass that writes h, c and the activated gates.
//  backward  the time loop only carries the recurrence (one pointwise pass and
//            one dh GEMM per step); dx, dWx, dWh and db are whole-sequence
//            GEMMs / reductions after the loop.
// The batch is split across threads once for the whole time loop (one parallel
// region per sequence, no barrier per step): rows of different sequences never
// interact, so each thread runs its own single-threaded BLAS calls on its rows.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "blas.h"
#include "rnn_pointwise.h"

namespace a3ext::cpu {

// ---------------------------------------------------------------------------
// Instruction-set selection for the pointwise passes.
#define A3EXT_DECLARE_ISA(ISA)                                        \
  extern const RnnPointwiseKernels<float> rnn_pointwise_f32_##ISA;   \
  extern const RnnPointwiseKernels<double> rnn_pointwise_f64_##ISA;
A3EXT_DECLARE_ISA(DEFAULT)
#ifdef A3EXT_HAVE_AVX2
A3EXT_DECLARE_ISA(AVX2)
#endif
#ifdef A3EXT_HAVE_AVX512
A3EXT_DECLARE_ISA(AVX512)
#endif

namespace {
// ATen's choice for this CPU (it honours the ATEN_CPU_CAPABILITY variable).
std::string chosen_isa() {
  const std::string cap = at::get_cpu_capability();
#ifdef A3EXT_HAVE_AVX512
  if (cap == "AVX512") return "AVX512";
#endif
#ifdef A3EXT_HAVE_AVX2
  if (cap == "AVX512" || cap == "AVX2") return "AVX2";
#endif
  return "DEFAULT";
}
}  // namespace

const char* rnn_pointwise_isa() {
  static const std::string isa = chosen_isa();
  return isa.c_str();
}

#define A3EXT_PICK(T, SUFFIX)                                                   \
  template <>                                                                   \
  const RnnPointwiseKernels<T>& rnn_pointwise_kernels<T>() {                    \
    static const RnnPointwiseKernels<T>* k = [] {                               \
      const std::string isa = rnn_pointwise_isa();                              \
      (void)isa;                                                                \
      A3EXT_PICK_AVX512(SUFFIX)                                                 \
      A3EXT_PICK_AVX2(SUFFIX)                                                   \
      return &rnn_pointwise_##SUFFIX##_DEFAULT;                                 \
    }();                                                                        \
    return *k;                                                                  \
  }
#ifdef A3EXT_HAVE_AVX512
#define A3EXT_PICK_AVX512(SUFFIX) \
  if (isa == "AVX512") return &rnn_pointwise_##SUFFIX##_AVX512;
#else
#define A3EXT_PICK_AVX512(SUFFIX)
#endif
#ifdef A3EXT_HAVE_AVX2
#define A3EXT_PICK_AVX2(SUFFIX) \
  if (isa == "AVX2") return &rnn_pointwise_##SUFFIX##_AVX2;
#else
#define A3EXT_PICK_AVX2(SUFFIX)
#endif
A3EXT_PICK(float, f32)
A3EXT_PICK(double, f64)

namespace {

using at::Tensor;

// ---------------------------------------------------------------------------
// Input validation: every message names the op, the argument, the expected and
// the actual value.
std::string dtype_name(const Tensor& t) {
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

void check_same(const char* op, const Tensor& ref, const char* ref_name, const Tensor& t,
                const char* name) {
  TORCH_CHECK_TYPE(t.is_floating_point(), op, ": ", name,
                   " must be a floating-point tensor (torch.float32 or torch.float64), but got ",
                   dtype_name(t));
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), op, ": all inputs must have the same dtype, but ",
                   name, " is ", dtype_name(t), " while ", ref_name, " is ", dtype_name(ref));
  TORCH_CHECK_VALUE(t.device() == ref.device(), op, ": all inputs must be on the same device, but ",
                    name, " is on ", t.device(), " while ", ref_name, " is on ", ref.device());
}

void check_shape(const char* op, const Tensor& t, const char* name, at::IntArrayRef expected,
                 const char* expected_str) {
  TORCH_CHECK_VALUE(t.sizes() == expected, op, ": expected ", name, " of shape ", expected_str,
                    " = ", expected, ", but got ", t.sizes());
}

struct Dims {
  int64_t N, T, D, H;
};

// gate_mult = 1 for the RNN, 4 for the LSTM.
// b may be null (the backward ops do not take the bias).
Dims check_forward_inputs(const char* op, const Tensor& x, const Tensor& h0, const Tensor& Wx,
                          const Tensor& Wh, const Tensor* b, int64_t gate_mult) {
  TORCH_CHECK_TYPE(x.is_floating_point() && (x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble),
                   op, ": x must be torch.float32 or torch.float64, but got ", dtype_name(x));
  TORCH_CHECK_VALUE(x.dim() == 3, op, ": expected x of shape (N, T, D), but got a ", x.dim(),
                    "-D tensor of shape ", x.sizes());
  TORCH_CHECK_VALUE(h0.dim() == 2, op, ": expected h0 of shape (N, H), but got a ", h0.dim(),
                    "-D tensor of shape ", h0.sizes());
  check_same(op, x, "x", h0, "h0");
  check_same(op, x, "x", Wx, "Wx");
  check_same(op, x, "x", Wh, "Wh");
  if (b != nullptr) check_same(op, x, "x", *b, "b");
  const Dims d{x.size(0), x.size(1), x.size(2), h0.size(1)};
  TORCH_CHECK_VALUE(h0.size(0) == d.N, op, ": expected h0 of shape (N, H) with N = ", d.N,
                    " (from x), but got ", h0.sizes());
  const int64_t G = gate_mult * d.H;
  const char* gx = gate_mult == 4 ? "(D, 4H)" : "(D, H)";
  const char* gh = gate_mult == 4 ? "(H, 4H)" : "(H, H)";
  const char* gb = gate_mult == 4 ? "(4H,)" : "(H,)";
  check_shape(op, Wx, "Wx", {d.D, G}, gx);
  check_shape(op, Wh, "Wh", {d.H, G}, gh);
  if (b != nullptr) check_shape(op, *b, "b", {G}, gb);
  return d;
}

void check_sequence(const char* op, const Tensor& t, const char* name, const Tensor& x,
                    const Dims& d, int64_t width, const char* shape_str) {
  check_same(op, x, "x", t, name);
  check_shape(op, t, name, {d.N, d.T, width}, shape_str);
}

template <typename T>
const T* ptr(const Tensor& t) {
  return t.const_data_ptr<T>();
}
template <typename T>
T* mptr(Tensor& t) {
  return t.mutable_data_ptr<T>();
}

// Rows per thread large enough that one step's recurrent GEMM (2*rows*H*gH
// flops) outweighs the cost of waking a thread.
int64_t row_grain(int64_t H, int64_t gate_mult) {
  return std::max<int64_t>(1, 65536 / std::max<int64_t>(1, 2 * H * gate_mult * H));
}

// x (N*T, D) @ W (D, G) + b, written into out (N*T, G).
template <typename T>
void input_projection(const Tensor& x, const Tensor& W, const Tensor& b, Tensor& out) {
  const int64_t rows = x.size(0) * x.size(1), D = x.size(2), G = W.size(1);
  if (rows == 0) return;
  out.view({rows, G}).copy_(b.unsqueeze(0).expand({rows, G}));
  gemm<T>(false, false, rows, G, D, T(1), ptr<T>(x), D, ptr<T>(W), G, T(1), mptr<T>(out), G);
}

// [h0, h_0, ..., h_{T-2}] as (N*T, H): the hidden state each step started from.
Tensor previous_states(const Tensor& h0, const Tensor& h) {
  const int64_t N = h.size(0), T = h.size(1), H = h.size(2);
  Tensor prev = at::empty({N, T, H}, h.options());
  if (T > 0) {
    prev.select(1, 0).copy_(h0);
    if (T > 1) prev.narrow(1, 1, T - 1).copy_(h.narrow(1, 0, T - 1));
  }
  return prev.view({N * T, H});
}

// ---------------------------------------------------------------------------
// Vanilla RNN
template <typename T>
void rnn_forward_impl(const Tensor& x, const Tensor& h0, const Tensor& Wx, const Tensor& Wh,
                      const Tensor& b, Tensor& h) {
  const int64_t N = x.size(0), TT = x.size(1), H = h0.size(1);
  input_projection<T>(x, Wx, b, h);  // h starts as x @ Wx + b
  const auto& k = rnn_pointwise_kernels<T>();
  T* hp = mptr<T>(h);
  const T* h0p = ptr<T>(h0);
  const T* whp = ptr<T>(Wh);
  at::parallel_for(0, N, row_grain(H, 1), [&](int64_t n0, int64_t n1) {
    const int64_t rows = n1 - n0;
    T* hr = hp + n0 * TT * H;
    for (int64_t t = 0; t < TT; ++t) {
      const T* prev = t == 0 ? h0p + n0 * H : hr + (t - 1) * H;
      const int64_t prev_ld = t == 0 ? H : TT * H;
      gemm<T>(false, false, rows, H, H, T(1), prev, prev_ld, whp, H, T(1), hr + t * H, TT * H);
      k.tanh_inplace(rows, H, hr + t * H, TT * H);
    }
  });
}

Tensor rnn_forward_cpu(const Tensor& x_, const Tensor& h0_, const Tensor& Wx_, const Tensor& Wh_,
                       const Tensor& b_) {
  const char* op = "a3ext.rnn";
  const Dims d = check_forward_inputs(op, x_, h0_, Wx_, Wh_, &b_, 1);
  const Tensor x = x_.contiguous(), h0 = h0_.contiguous(), Wx = Wx_.contiguous(),
               Wh = Wh_.contiguous(), b = b_.contiguous();
  Tensor h = at::empty({d.N, d.T, d.H}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnn_forward", [&] {
    rnn_forward_impl<scalar_t>(x, h0, Wx, Wh, b, h);
  });
  return h;
}

template <typename T>
void rnn_backward_impl(const Tensor& dh, const Tensor& Wh, const Tensor& h, Tensor& da,
                       Tensor& dh0) {
  const int64_t N = h.size(0), TT = h.size(1), H = h.size(2);
  const auto& k = rnn_pointwise_kernels<T>();
  const T* hp = ptr<T>(h);
  const T* dhp = ptr<T>(dh);
  const T* whp = ptr<T>(Wh);
  T* dap = mptr<T>(da);
  T* dh0p = mptr<T>(dh0);
  at::parallel_for(0, N, row_grain(H, 1), [&](int64_t n0, int64_t n1) {
    const int64_t rows = n1 - n0;
    std::vector<T> dh_rec(rows * H, T(0));  // gradient reaching h_t through step t+1
    const int64_t off = n0 * TT * H;
    for (int64_t t = TT - 1; t >= 0; --t) {
      T* dat = dap + off + t * H;
      k.rnn_backward(rows, H, hp + off + t * H, TT * H, dhp + off + t * H, TT * H,
                     t == TT - 1 ? nullptr : dh_rec.data(), dat, TT * H);
      gemm<T>(false, true, rows, H, H, T(1), dat, TT * H, whp, H, T(0), dh_rec.data(), H);
    }
    std::copy(dh_rec.begin(), dh_rec.end(), dh0p + n0 * H);
  });
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> rnn_backward_cpu(
    const Tensor& dh_, const Tensor& x_, const Tensor& h0_, const Tensor& Wx_, const Tensor& Wh_,
    const Tensor& h_) {
  const char* op = "a3ext.rnn_backward";
  const Dims d = check_forward_inputs(op, x_, h0_, Wx_, Wh_, nullptr, 1);
  check_sequence(op, h_, "h", x_, d, d.H, "(N, T, H)");
  check_sequence(op, dh_, "dh", x_, d, d.H, "(N, T, H)");
  const Tensor x = x_.contiguous(), h0 = h0_.contiguous(), Wx = Wx_.contiguous(),
               Wh = Wh_.contiguous(), h = h_.contiguous(), dh = dh_.contiguous();
  Tensor da = at::empty({d.N, d.T, d.H}, x.options());
  Tensor dh0 = at::zeros({d.N, d.H}, x.options());
  if (d.T > 0) {
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnn_backward", [&] {
      rnn_backward_impl<scalar_t>(dh, Wh, h, da, dh0);
    });
  }
  const Tensor da2 = da.view({d.N * d.T, d.H});
  Tensor dx = at::mm(da2, Wx.t()).view({d.N, d.T, d.D});
  Tensor dWx = at::mm(x.view({d.N * d.T, d.D}).t(), da2);
  Tensor dWh = at::mm(previous_states(h0, h).t(), da2);
  Tensor db = da2.sum(0);
  return {dx, dh0, dWx, dWh, db};
}

// ---------------------------------------------------------------------------
// LSTM
template <typename T>
void lstm_forward_impl(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& Wx,
                       const Tensor& Wh, const Tensor& b, Tensor& h, Tensor& c, Tensor& gates) {
  const int64_t N = x.size(0), TT = x.size(1), H = h0.size(1), G = 4 * H;
  input_projection<T>(x, Wx, b, gates);  // gates start as x @ Wx + b
  const auto& k = rnn_pointwise_kernels<T>();
  T* gp = mptr<T>(gates);
  T* hp = mptr<T>(h);
  T* cp = mptr<T>(c);
  const T* h0p = ptr<T>(h0);
  const T* c0p = ptr<T>(c0);
  const T* whp = ptr<T>(Wh);
  at::parallel_for(0, N, row_grain(H, 4), [&](int64_t n0, int64_t n1) {
    const int64_t rows = n1 - n0;
    T* gr = gp + n0 * TT * G;
    T* hr = hp + n0 * TT * H;
    T* cr = cp + n0 * TT * H;
    for (int64_t t = 0; t < TT; ++t) {
      const T* hprev = t == 0 ? h0p + n0 * H : hr + (t - 1) * H;
      const T* cprev = t == 0 ? c0p + n0 * H : cr + (t - 1) * H;
      const int64_t prev_ld = t == 0 ? H : TT * H;
      T* gt = gr + t * G;
      gemm<T>(false, false, rows, G, H, T(1), hprev, prev_ld, whp, G, T(1), gt, TT * G);
      k.lstm_forward(rows, H, gt, TT * G, cprev, prev_ld, cr + t * H, TT * H, hr + t * H, TT * H);
    }
  });
}

std::tuple<Tensor, Tensor, Tensor> lstm_forward_cpu(const Tensor& x_, const Tensor& h0_,
                                                    const Tensor& c0_, const Tensor& Wx_,
                                                    const Tensor& Wh_, const Tensor& b_) {
  const char* op = "a3ext.lstm";
  const Dims d = check_forward_inputs(op, x_, h0_, Wx_, Wh_, &b_, 4);
  check_same(op, x_, "x", c0_, "c0");
  check_shape(op, c0_, "c0", {d.N, d.H}, "(N, H)");
  const Tensor x = x_.contiguous(), h0 = h0_.contiguous(), c0 = c0_.contiguous(),
               Wx = Wx_.contiguous(), Wh = Wh_.contiguous(), b = b_.contiguous();
  Tensor h = at::empty({d.N, d.T, d.H}, x.options());
  Tensor c = at::empty({d.N, d.T, d.H}, x.options());
  Tensor gates = at::empty({d.N, d.T, 4 * d.H}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_forward", [&] {
    lstm_forward_impl<scalar_t>(x, h0, c0, Wx, Wh, b, h, c, gates);
  });
  return {h, c, gates};
}

template <typename T>
void lstm_backward_impl(const Tensor* dh, const Tensor* dc, const Tensor& c0, const Tensor& Wh,
                        const Tensor& c, const Tensor& gates, Tensor& dgates, Tensor& dh0,
                        Tensor& dc0) {
  const int64_t N = c.size(0), TT = c.size(1), H = c.size(2), G = 4 * H;
  const auto& k = rnn_pointwise_kernels<T>();
  const T* gp = ptr<T>(gates);
  const T* cp = ptr<T>(c);
  const T* c0p = ptr<T>(c0);
  const T* whp = ptr<T>(Wh);
  const T* dhp = dh == nullptr ? nullptr : ptr<T>(*dh);
  const T* dcp = dc == nullptr ? nullptr : ptr<T>(*dc);
  T* dgp = mptr<T>(dgates);
  T* dh0p = mptr<T>(dh0);
  T* dc0p = mptr<T>(dc0);
  at::parallel_for(0, N, row_grain(H, 4), [&](int64_t n0, int64_t n1) {
    const int64_t rows = n1 - n0;
    std::vector<T> dh_rec(rows * H, T(0));    // gradient reaching h_t through step t+1
    std::vector<T> dc_carry(rows * H, T(0));  // gradient reaching c_t through step t+1
    const int64_t offh = n0 * TT * H, offg = n0 * TT * G;
    for (int64_t t = TT - 1; t >= 0; --t) {
      const T* cprev = t == 0 ? c0p + n0 * H : cp + offh + (t - 1) * H;
      const int64_t cprev_ld = t == 0 ? H : TT * H;
      T* dgt = dgp + offg + t * G;
      k.lstm_backward(rows, H, gp + offg + t * G, TT * G, cp + offh + t * H, TT * H, cprev,
                      cprev_ld, dhp == nullptr ? nullptr : dhp + offh + t * H, TT * H,
                      t == TT - 1 ? nullptr : dh_rec.data(),
                      dcp == nullptr ? nullptr : dcp + offh + t * H, TT * H, dc_carry.data(),
                      dgt, TT * G);
      gemm<T>(false, true, rows, H, G, T(1), dgt, TT * G, whp, G, T(0), dh_rec.data(), H);
    }
    std::copy(dh_rec.begin(), dh_rec.end(), dh0p + n0 * H);
    std::copy(dc_carry.begin(), dc_carry.end(), dc0p + n0 * H);
  });
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_backward_cpu(
    const std::optional<Tensor>& dh_, const std::optional<Tensor>& dc_, const Tensor& x_,
    const Tensor& h0_, const Tensor& c0_, const Tensor& Wx_, const Tensor& Wh_, const Tensor& h_,
    const Tensor& c_, const Tensor& gates_) {
  const char* op = "a3ext.lstm_backward";
  const Dims d = check_forward_inputs(op, x_, h0_, Wx_, Wh_, nullptr, 4);
  check_same(op, x_, "x", c0_, "c0");
  check_shape(op, c0_, "c0", {d.N, d.H}, "(N, H)");
  check_sequence(op, h_, "h", x_, d, d.H, "(N, T, H)");
  check_sequence(op, c_, "c", x_, d, d.H, "(N, T, H)");
  check_sequence(op, gates_, "gates", x_, d, 4 * d.H, "(N, T, 4H)");
  const bool has_dh = dh_.has_value() && dh_->defined();
  const bool has_dc = dc_.has_value() && dc_->defined();
  if (has_dh) check_sequence(op, *dh_, "dh", x_, d, d.H, "(N, T, H)");
  if (has_dc) check_sequence(op, *dc_, "dc", x_, d, d.H, "(N, T, H)");
  const Tensor x = x_.contiguous(), h0 = h0_.contiguous(), c0 = c0_.contiguous(),
               Wx = Wx_.contiguous(), Wh = Wh_.contiguous(), h = h_.contiguous(),
               c = c_.contiguous(), gates = gates_.contiguous();
  const Tensor dh = has_dh ? dh_->contiguous() : Tensor();
  const Tensor dc = has_dc ? dc_->contiguous() : Tensor();
  const int64_t G = 4 * d.H;
  Tensor dgates = at::empty({d.N, d.T, G}, x.options());
  Tensor dh0 = at::zeros({d.N, d.H}, x.options());
  Tensor dc0 = at::zeros({d.N, d.H}, x.options());
  if (d.T > 0) {
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_backward", [&] {
      lstm_backward_impl<scalar_t>(has_dh ? &dh : nullptr, has_dc ? &dc : nullptr, c0, Wh, c,
                                   gates, dgates, dh0, dc0);
    });
  }
  const Tensor dg2 = dgates.view({d.N * d.T, G});
  Tensor dx = at::mm(dg2, Wx.t()).view({d.N, d.T, d.D});
  Tensor dWx = at::mm(x.view({d.N * d.T, d.D}).t(), dg2);
  Tensor dWh = at::mm(previous_states(h0, h).t(), dg2);
  Tensor db = dg2.sum(0);
  return {dx, dh0, dc0, dWx, dWh, db};
}

}  // namespace

TORCH_LIBRARY_IMPL(a3ext, CPU, m) {
  m.impl("rnn_forward", &rnn_forward_cpu);
  m.impl("rnn_backward", &rnn_backward_cpu);
  m.impl("lstm_forward", &lstm_forward_cpu);
  m.impl("lstm_backward", &lstm_backward_cpu);
}

}  // namespace a3ext::cpu
