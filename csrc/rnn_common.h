// Input validation and helpers shared by the CPU and CUDA kernels of the RNN
// and LSTM ops: every message names the op, the argument, the expected and the
// actual value (a3ext/ops.py raises the same messages from the fake kernels).
#pragma once
#include <ATen/ATen.h>

#include <optional>
#include <string>
#include <vector>

#include "checks.h"

namespace a3ext {

using at::Tensor;

struct Dims {
  int64_t N, T, D, H;
};

// Wx, Wh and b (b may be null) have the dtype and device of x.
inline void check_weights_same(const char* op, const Tensor& x, const Tensor& Wx, const Tensor& Wh,
                               const Tensor* b) {
  check_same(op, x, "x", Wx, "Wx");
  check_same(op, x, "x", Wh, "Wh");
  if (b != nullptr) check_same(op, x, "x", *b, "b");
}

// Wx (D, G), Wh (H, G), b (G) (b may be null) with G = gate_mult * H.
inline void check_weight_shapes(const char* op, const Tensor& Wx, const Tensor& Wh, const Tensor* b,
                                int64_t D, int64_t H, int64_t gate_mult) {
  const int64_t G = gate_mult * H;
  const char* gx = gate_mult == 4 ? "(D, 4H)" : "(D, H)";
  const char* gh = gate_mult == 4 ? "(H, 4H)" : "(H, H)";
  const char* gb = gate_mult == 4 ? "(4H,)" : "(H,)";
  check_shape(op, Wx, "Wx", {D, G}, gx, " (D from x, H from h0)");
  check_shape(op, Wh, "Wh", {H, G}, gh, " (H from h0)");
  if (b != nullptr) check_shape(op, *b, "b", {G}, gb, " (H from h0)");
}

// H small enough that gate_mult * H fits in int64 (checked before any G = 4H).
inline void check_gate_width(const char* op, int64_t H, int64_t gate_mult) {
  TORCH_CHECK_VALUE(gate_mult == 1 || H <= INT64_MAX / gate_mult, op,
                    ": expected h0.size(1) = H with 4H < 2**63, but got H = ", H);
}

// gate_mult = 1 for the RNN, 4 for the LSTM.
// b may be null (the backward ops do not take the bias).
inline Dims check_forward_inputs(const char* op, const Tensor& x, const Tensor& h0, const Tensor& Wx,
                                 const Tensor& Wh, const Tensor* b, int64_t gate_mult) {
  check_tensors(op, {{x, "x"}, {h0, "h0"}, {Wx, "Wx"}, {Wh, "Wh"}});
  if (b != nullptr) check_tensor(op, *b, "b");
  check_float(op, x, "x");
  TORCH_CHECK_VALUE(x.dim() == 3, op, ": expected x of shape (N, T, D), but got a ", x.dim(),
                    "-D tensor of shape ", x.sizes());
  TORCH_CHECK_VALUE(h0.dim() == 2, op, ": expected h0 of shape (N, H), but got a ", h0.dim(),
                    "-D tensor of shape ", h0.sizes());
  check_same(op, x, "x", h0, "h0");
  check_weights_same(op, x, Wx, Wh, b);  // the order of the fake kernels' checks (a3ext/ops.py)
  const Dims d{x.size(0), x.size(1), x.size(2), h0.size(1)};
  TORCH_CHECK_VALUE(h0.size(0) == d.N, op, ": expected h0 of shape (N, H) with N = ", d.N,
                    " (from x), but got ", h0.sizes());
  check_gate_width(op, d.H, gate_mult);
  check_weight_shapes(op, Wx, Wh, b, d.D, d.H, gate_mult);
  check_output_size(op, gate_mult == 4 ? "the gates" : "the output h", {d.N, d.T, gate_mult * d.H},
                    gate_mult == 4 ? "(N, T, 4H)" : "(N, T, H)", x, "x and h0");
  return d;
}

// t has x's dtype and device and the given shape.
inline void check_like(const char* op, const Tensor& t, const char* name, const Tensor& x,
                       at::IntArrayRef shape, const char* shape_str) {
  check_same(op, x, "x", t, name);
  const std::string s = shape_str;  // where the sizes come from, for the message
  const char* note = s == "(N, H)"   ? " (N from x, H from h0)"
                     : s == "(B, H)" ? " (B, H from h0)"
                     : s[1] == 'P'   ? " (P from x, H from h0)"
                                     : " (N, T from x, H from h0)";
  check_shape(op, t, name, shape, shape_str, note);
}

// [h0, h_0, ..., h_{T-2}] as (N*T, H): the hidden state each step started from.
inline Dims check_rnn_backward_inputs(const Tensor& dh, const Tensor& x, const Tensor& h0,
                                     const Tensor& Wx, const Tensor& Wh, const Tensor& h) {
  const char* op = "a3ext.rnn_backward";
  check_tensors(op, {{dh, "dh"}, {x, "x"}, {h0, "h0"}, {Wx, "Wx"}, {Wh, "Wh"}, {h, "h"}});
  const Dims d = check_forward_inputs(op, x, h0, Wx, Wh, nullptr, 1);
  check_like(op, h, "h", x, {d.N, d.T, d.H}, "(N, T, H)");
  check_like(op, dh, "dh", x, {d.N, d.T, d.H}, "(N, T, H)");
  return d;
}

inline Dims check_lstm_forward_inputs(const Tensor& x, const Tensor& h0, const Tensor& c0,
                                      const Tensor& Wx, const Tensor& Wh, const Tensor& b) {
  const char* op = "a3ext.lstm";
  check_tensors(op, {{x, "x"}, {h0, "h0"}, {c0, "c0"}, {Wx, "Wx"}, {Wh, "Wh"}, {b, "b"}});
  const Dims d = check_forward_inputs(op, x, h0, Wx, Wh, &b, 4);
  check_like(op, c0, "c0", x, {d.N, d.H}, "(N, H)");
  return d;
}

// dh / dc: optional upstream gradients (undefined = zero).
inline Dims check_lstm_backward_inputs(const Tensor& dh, const Tensor& dc, const Tensor& x,
                                       const Tensor& h0, const Tensor& c0, const Tensor& Wx,
                                       const Tensor& Wh, const Tensor& h, const Tensor& c,
                                       const Tensor& gates) {
  const char* op = "a3ext.lstm_backward";
  check_tensors(op, {{dh, "dh", true}, {dc, "dc", true}, {x, "x"}, {h0, "h0"}, {c0, "c0"}, {Wx, "Wx"},
                     {Wh, "Wh"}, {h, "h"}, {c, "c"}, {gates, "gates"}});
  const Dims d = check_forward_inputs(op, x, h0, Wx, Wh, nullptr, 4);
  check_like(op, c0, "c0", x, {d.N, d.H}, "(N, H)");
  check_like(op, h, "h", x, {d.N, d.T, d.H}, "(N, T, H)");
  check_like(op, c, "c", x, {d.N, d.T, d.H}, "(N, T, H)");
  check_like(op, gates, "gates", x, {d.N, d.T, 4 * d.H}, "(N, T, 4H)");
  if (dh.defined()) check_like(op, dh, "dh", x, {d.N, d.T, d.H}, "(N, T, H)");
  if (dc.defined()) check_like(op, dc, "dc", x, {d.N, d.T, d.H}, "(N, T, H)");
  return d;
}

inline Tensor defined_or_empty(const std::optional<Tensor>& t) {
  return t.has_value() && t->defined() ? *t : Tensor();
}


// ---- packed sequences (the layout of torch.nn.utils.rnn.PackedSequence) ----
// x (P, D) holds the rows of all sequences time-major: step t has batch_sizes[t]
// rows, the first batch_sizes[t] sequences (sorted by non-increasing length), so
// P = sum(batch_sizes). batch_sizes: 1-D int64 CPU tensor, non-increasing, each
// in [0, B] where B = h0.size(0) (sequences of length 0 are allowed).
struct PackedDims {
  int64_t P, T, B, D, H;
  std::vector<int64_t> bs;   // batch_sizes
  std::vector<int64_t> off;  // off[t] = first packed row of step t; off[T] = P
};

inline PackedDims check_packed_inputs(const char* op, const Tensor& x, const Tensor& batch_sizes,
                                      const Tensor& h0, const Tensor& Wx, const Tensor& Wh,
                                      const Tensor* b, int64_t gate_mult) {
  check_tensors(op, {{x, "x"}, {batch_sizes, "batch_sizes"}, {h0, "h0"}, {Wx, "Wx"}, {Wh, "Wh"}});
  if (b != nullptr) check_tensor(op, *b, "b");
  check_float(op, x, "x");
  TORCH_CHECK_VALUE(x.dim() == 2, op, ": expected packed x of shape (P, D), but got a ", x.dim(),
                    "-D tensor of shape ", x.sizes());
  TORCH_CHECK_VALUE(h0.dim() == 2, op, ": expected h0 of shape (B, H), but got a ", h0.dim(),
                    "-D tensor of shape ", h0.sizes());
  TORCH_CHECK_TYPE(batch_sizes.scalar_type() == at::kLong, op,
                   ": batch_sizes must be a torch.int64 tensor, but got ", dtype_name(batch_sizes));
  TORCH_CHECK_VALUE(batch_sizes.dim() == 1, op, ": expected batch_sizes of shape (T,), but got a ",
                    batch_sizes.dim(), "-D tensor of shape ", batch_sizes.sizes());
  TORCH_CHECK_VALUE(batch_sizes.device().is_cpu(), op,
                    ": batch_sizes must be on the CPU (as PackedSequence.batch_sizes), but it is on ",
                    batch_sizes.device());
  check_same(op, x, "x", h0, "h0");
  check_weights_same(op, x, Wx, Wh, b);
  PackedDims d{x.size(0), batch_sizes.size(0), h0.size(0), x.size(1), h0.size(1), {}, {}};
  check_gate_width(op, d.H, gate_mult);
  check_weight_shapes(op, Wx, Wh, b, d.D, d.H, gate_mult);  // before the values, as the fake kernel
  check_output_size(op, gate_mult == 4 ? "the gates" : "the output h", {d.P, gate_mult * d.H},
                    gate_mult == 4 ? "(P, 4H)" : "(P, H)", x, "x and h0");
  const Tensor bsc = batch_sizes.contiguous();
  const int64_t* bp = bsc.const_data_ptr<int64_t>();
  d.bs.assign(bp, bp + d.T);
  d.off.resize(d.T + 1);
  int64_t sum = 0;
  for (int64_t t = 0; t < d.T; ++t) {
    TORCH_CHECK_VALUE(d.bs[t] >= 0 && d.bs[t] <= d.B, op, ": expected every batch_sizes[t] in [0, B] with B = ",
                      d.B, " (h0.size(0)), but got batch_sizes[", t, "] = ", d.bs[t]);
    TORCH_CHECK_VALUE(t == 0 || d.bs[t] <= d.bs[t - 1], op,
                      ": batch_sizes must be non-increasing (sequences sorted by decreasing length), but batch_sizes[",
                      t, "] = ", d.bs[t], " > batch_sizes[", t - 1, "] = ", d.bs[t - 1]);
    TORCH_CHECK_VALUE(d.bs[t] <= INT64_MAX - sum, op, ": expected packed x with P = sum(batch_sizes) rows, but ",
                      "sum(batch_sizes) overflows int64 at batch_sizes[", t, "] = ", d.bs[t], " (x is ",
                      x.sizes(), ")");
    d.off[t] = sum;
    sum += d.bs[t];
  }
  d.off[d.T] = sum;
  TORCH_CHECK_VALUE(sum == d.P, op, ": expected packed x with P = sum(batch_sizes) = ", sum,
                    " rows, but got ", x.sizes());
  return d;
}

inline PackedDims check_rnn_packed_backward_inputs(const Tensor& dh, const Tensor& x, const Tensor& batch_sizes,
                                                   const Tensor& h0, const Tensor& Wx, const Tensor& Wh,
                                                   const Tensor& h) {
  const char* op = "a3ext.rnn_packed_backward";
  check_tensors(op, {{dh, "dh"}, {x, "x"}, {batch_sizes, "batch_sizes"}, {h0, "h0"}, {Wx, "Wx"}, {Wh, "Wh"},
                     {h, "h"}});
  const PackedDims d = check_packed_inputs(op, x, batch_sizes, h0, Wx, Wh, nullptr, 1);
  check_like(op, h, "h", x, {d.P, d.H}, "(P, H)");
  check_like(op, dh, "dh", x, {d.P, d.H}, "(P, H)");
  return d;
}

inline PackedDims check_lstm_packed_forward_inputs(const Tensor& x, const Tensor& batch_sizes, const Tensor& h0,
                                                   const Tensor& c0, const Tensor& Wx, const Tensor& Wh,
                                                   const Tensor& b) {
  const char* op = "a3ext.lstm_packed";
  check_tensors(op, {{x, "x"}, {batch_sizes, "batch_sizes"}, {h0, "h0"}, {c0, "c0"}, {Wx, "Wx"}, {Wh, "Wh"},
                     {b, "b"}});
  const PackedDims d = check_packed_inputs(op, x, batch_sizes, h0, Wx, Wh, &b, 4);
  check_like(op, c0, "c0", x, {d.B, d.H}, "(B, H)");
  return d;
}

// dh / dc: optional upstream gradients (undefined = zero).
inline PackedDims check_lstm_packed_backward_inputs(const Tensor& dh, const Tensor& dc, const Tensor& x,
                                                    const Tensor& batch_sizes, const Tensor& h0, const Tensor& c0,
                                                    const Tensor& Wx, const Tensor& Wh, const Tensor& h,
                                                    const Tensor& c, const Tensor& gates) {
  const char* op = "a3ext.lstm_packed_backward";
  check_tensors(op, {{dh, "dh", true}, {dc, "dc", true}, {x, "x"}, {batch_sizes, "batch_sizes"}, {h0, "h0"},
                     {c0, "c0"}, {Wx, "Wx"}, {Wh, "Wh"}, {h, "h"}, {c, "c"}, {gates, "gates"}});
  const PackedDims d = check_packed_inputs(op, x, batch_sizes, h0, Wx, Wh, nullptr, 4);
  check_like(op, c0, "c0", x, {d.B, d.H}, "(B, H)");
  check_like(op, h, "h", x, {d.P, d.H}, "(P, H)");
  check_like(op, c, "c", x, {d.P, d.H}, "(P, H)");
  check_like(op, gates, "gates", x, {d.P, 4 * d.H}, "(P, 4H)");
  if (dh.defined()) check_like(op, dh, "dh", x, {d.P, d.H}, "(P, H)");
  if (dc.defined()) check_like(op, dc, "dc", x, {d.P, d.H}, "(P, H)");
  return d;
}

// Where the per-step rows live, for both layouts the ops take: row (step t,
// sequence n) of a buffer of width W starts at element row(t, n) * W.
//   padded, batch-major (N, T, W): row(t, n) = n * T + t, every step has N rows;
//   packed (PackedSequence): row(t, n) = off[t] + n, step t has batch_sizes[t]
//   rows, the first sequences (sorted by non-increasing length).
struct SeqLayout {
  std::vector<int64_t> first;  // row(t, 0)
  std::vector<int64_t> count;  // sequences running at step t (non-increasing)
  int64_t stride;              // rows between consecutive sequences of one step
  int64_t row(int64_t t, int64_t n) const { return first[t] + n * stride; }
  int64_t steps() const { return static_cast<int64_t>(count.size()); }

  static SeqLayout padded(int64_t N, int64_t T) {
    SeqLayout l{std::vector<int64_t>(T), std::vector<int64_t>(T, N), T};
    for (int64_t t = 0; t < T; ++t) l.first[t] = t;
    return l;
  }
  static SeqLayout packed(const PackedDims& d) {
    return SeqLayout{std::vector<int64_t>(d.off.begin(), d.off.end() - 1), d.bs, 1};
  }
};

// [h_{t-1}] for every row (width H): the hidden state each row's step started
// from, in the rows' own layout (h0 for step 0).
inline void previous_states_into(Tensor& prev, const Tensor& h0, const Tensor& h, const SeqLayout& l) {
  const int64_t H = h.size(1);
  auto rows_of = [&](const Tensor& buf, int64_t t, int64_t n) {
    return buf.as_strided({n, H}, {l.stride * H, 1}, buf.storage_offset() + l.row(t, 0) * H);
  };
  for (int64_t t = 0; t < l.steps() && l.count[t] > 0; ++t) {
    const int64_t n = l.count[t];
    rows_of(prev, t, n).copy_(t == 0 ? h0.narrow(0, 0, n) : rows_of(h, t - 1, n));
  }
}
inline Tensor previous_states(const Tensor& h0, const Tensor& h, const SeqLayout& l) {
  Tensor prev = at::empty_like(h);
  previous_states_into(prev, h0, h, l);
  return prev;
}

}  // namespace a3ext
