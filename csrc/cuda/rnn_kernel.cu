// CUDA kernels of the vanilla RNN and LSTM ops (schemas in csrc/a3ext.cpp).
//
// The haste / cuDNN schedule: one cuBLAS GEMM projects the inputs of all N*T
// rows (bias folded in via addmm); per step one cuBLAS GEMM accumulates the
// recurrent term into that buffer in place (beta = 1, strided view, no copy)
// and one fused pointwise kernel applies the gate activations and writes h, c
// and the activated gates. The backward time loop only carries the recurrence
// (one pointwise kernel and one dh GEMM per step); dx, dWx, dWh and db are
// whole-sequence GEMMs and a reduction afterwards. Everything runs on the
// current stream under a device guard; every launch is checked.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "../rnn_common.h"

namespace a3ext::cuda {
namespace {

constexpr int kThreads = 256;

inline int blocks_for(int64_t n) { return static_cast<int>((n + kThreads - 1) / kThreads); }

// The time loops launch one pointwise kernel per step over N*H threads: with no
// rows or no hidden units there is nothing to do, and a zero-size grid is an
// "invalid configuration argument" launch error. Everything after the loops
// (the whole-sequence GEMMs, reductions) handles empty sizes by itself.
inline bool has_step_work(const Dims& d) { return d.N > 0 && d.T > 0 && d.H > 0; }

template <typename T>
__device__ __forceinline__ T sigmoid(T x) {
  return T(1) / (T(1) + exp(-x));
}

// One thread per (row, hidden unit). gates (rows, 4H) with row stride gs hold
// the pre-activations [i f o g] on entry and the activated gates on exit.
template <typename T>
__global__ void lstm_forward_pointwise(int64_t N, int64_t H, T* __restrict__ gates, int64_t gs,
                                       const T* __restrict__ c_prev, int64_t cps,
                                       T* __restrict__ c, int64_t cs, T* __restrict__ h,
                                       int64_t hs) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= N * H) return;
  const int64_t n = idx / H, j = idx % H;
  T* g = gates + n * gs;
  const T i = sigmoid(g[j]), f = sigmoid(g[H + j]), o = sigmoid(g[2 * H + j]);
  const T gg = tanh(g[3 * H + j]);
  const T cn = f * c_prev[n * cps + j] + i * gg;
  g[j] = i;
  g[H + j] = f;
  g[2 * H + j] = o;
  g[3 * H + j] = gg;
  c[n * cs + j] = cn;
  h[n * hs + j] = o * tanh(cn);
}

// dh, dh_rec (row stride H) and dc_up may be null; dc_carry (N, H) carries
// dc_{t+1} * f_{t+1} in and dc_t * f_t out.
template <typename T>
__global__ void lstm_backward_pointwise(int64_t N, int64_t H, const T* __restrict__ gates,
                                        int64_t gs, const T* __restrict__ c, int64_t cs,
                                        const T* __restrict__ c_prev, int64_t cps,
                                        const T* __restrict__ dh, int64_t dhs,
                                        const T* __restrict__ dh_rec,
                                        const T* __restrict__ dc_up, int64_t dcs,
                                        T* __restrict__ dc_carry, T* __restrict__ dgates,
                                        int64_t dgs) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= N * H) return;
  const int64_t n = idx / H, j = idx % H;
  const T* g = gates + n * gs;
  const T i = g[j], f = g[H + j], o = g[2 * H + j], gg = g[3 * H + j];
  const T tc = tanh(c[n * cs + j]);
  const T dht = (dh != nullptr ? dh[n * dhs + j] : T(0)) + (dh_rec != nullptr ? dh_rec[idx] : T(0));
  const T dct = dc_carry[idx] + (dc_up != nullptr ? dc_up[n * dcs + j] : T(0)) +
                dht * o * (T(1) - tc * tc);
  dc_carry[idx] = dct * f;
  T* dg = dgates + n * dgs;
  dg[j] = dct * gg * i * (T(1) - i);
  dg[H + j] = dct * c_prev[n * cps + j] * f * (T(1) - f);
  dg[2 * H + j] = dht * tc * o * (T(1) - o);
  dg[3 * H + j] = dct * i * (T(1) - gg * gg);
}

template <typename T>
__global__ void rnn_forward_pointwise(int64_t N, int64_t H, T* __restrict__ a, int64_t as) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= N * H) return;
  T* p = a + (idx / H) * as + idx % H;
  *p = tanh(*p);
}

template <typename T>
__global__ void rnn_backward_pointwise(int64_t N, int64_t H, const T* __restrict__ h, int64_t hs,
                                       const T* __restrict__ dh, int64_t dhs,
                                       const T* __restrict__ dh_rec, T* __restrict__ da,
                                       int64_t das) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= N * H) return;
  const int64_t n = idx / H, j = idx % H;
  const T hv = h[n * hs + j];
  const T d = dh[n * dhs + j] + (dh_rec != nullptr ? dh_rec[idx] : T(0));
  da[n * das + j] = d * (T(1) - hv * hv);
}

// ---------------------------------------------------------------------------
Tensor rnn_forward_cuda(const Tensor& x_, const Tensor& h0_, const Tensor& Wx_, const Tensor& Wh_,
                        const Tensor& b_) {
  const char* op = "a3ext.rnn";
  const Dims d = check_forward_inputs(op, x_, h0_, Wx_, Wh_, &b_, 1);
  const c10::cuda::CUDAGuard guard(x_.device());
  const Tensor x = x_.contiguous(), h0 = h0_.contiguous(), Wx = Wx_.contiguous(),
               Wh = Wh_.contiguous(), b = b_.contiguous();
  Tensor h = at::addmm(b, x.view({d.N * d.T, d.D}), Wx).view({d.N, d.T, d.H});
  if (!has_step_work(d)) return h;
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnn_forward_cuda", [&] {
    for (int64_t t = 0; t < d.T; ++t) {
      Tensor ht = h.select(1, t);
      ht.addmm_(t == 0 ? h0 : h.select(1, t - 1), Wh);
      rnn_forward_pointwise<scalar_t><<<blocks_for(d.N * d.H), kThreads, 0, stream>>>(
          d.N, d.H, ht.mutable_data_ptr<scalar_t>(), d.T * d.H);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return h;
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> rnn_backward_cuda(
    const Tensor& dh_, const Tensor& x_, const Tensor& h0_, const Tensor& Wx_, const Tensor& Wh_,
    const Tensor& h_) {
  const Dims d = check_rnn_backward_inputs(dh_, x_, h0_, Wx_, Wh_, h_);
  const c10::cuda::CUDAGuard guard(x_.device());
  const Tensor x = x_.contiguous(), h0 = h0_.contiguous(), Wx = Wx_.contiguous(),
               Wh = Wh_.contiguous(), h = h_.contiguous(), dh = dh_.contiguous();
  Tensor da = at::empty({d.N, d.T, d.H}, x.options());
  Tensor dh_rec = at::zeros({d.N, d.H}, x.options());
  if (has_step_work(d)) {
    const auto stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnn_backward_cuda", [&] {
      for (int64_t t = d.T - 1; t >= 0; --t) {
        Tensor dat = da.select(1, t);
        rnn_backward_pointwise<scalar_t><<<blocks_for(d.N * d.H), kThreads, 0, stream>>>(
            d.N, d.H, h.select(1, t).const_data_ptr<scalar_t>(), d.T * d.H,
            dh.select(1, t).const_data_ptr<scalar_t>(), d.T * d.H,
            t == d.T - 1 ? nullptr : dh_rec.const_data_ptr<scalar_t>(),
            dat.mutable_data_ptr<scalar_t>(), d.T * d.H);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        at::mm_out(dh_rec, dat, Wh.t());
      }
    });
  }
  const Tensor da2 = da.view({d.N * d.T, d.H});
  Tensor dx = at::mm(da2, Wx.t()).view({d.N, d.T, d.D});
  Tensor dWx = at::mm(x.view({d.N * d.T, d.D}).t(), da2);
  Tensor dWh = at::mm(previous_states(h0, h.contiguous().view({d.N * d.T, d.H}), SeqLayout::padded(d.N, d.T)).t(), da2);
  Tensor db = da2.sum(0);
  return {dx, dh_rec, dWx, dWh, db};
}

std::tuple<Tensor, Tensor, Tensor> lstm_forward_cuda(const Tensor& x_, const Tensor& h0_,
                                                     const Tensor& c0_, const Tensor& Wx_,
                                                     const Tensor& Wh_, const Tensor& b_) {
  const Dims d = check_lstm_forward_inputs(x_, h0_, c0_, Wx_, Wh_, b_);
  const c10::cuda::CUDAGuard guard(x_.device());
  const Tensor x = x_.contiguous(), h0 = h0_.contiguous(), c0 = c0_.contiguous(),
               Wx = Wx_.contiguous(), Wh = Wh_.contiguous(), b = b_.contiguous();
  const int64_t G = 4 * d.H;
  Tensor gates = at::addmm(b, x.view({d.N * d.T, d.D}), Wx).view({d.N, d.T, G});
  Tensor h = at::empty({d.N, d.T, d.H}, x.options());
  Tensor c = at::empty({d.N, d.T, d.H}, x.options());
  if (!has_step_work(d)) return {h, c, gates};
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_forward_cuda", [&] {
    for (int64_t t = 0; t < d.T; ++t) {
      Tensor gt = gates.select(1, t);
      gt.addmm_(t == 0 ? h0 : h.select(1, t - 1), Wh);
      const scalar_t* cprev = t == 0 ? c0.const_data_ptr<scalar_t>()
                                     : c.select(1, t - 1).const_data_ptr<scalar_t>();
      lstm_forward_pointwise<scalar_t><<<blocks_for(d.N * d.H), kThreads, 0, stream>>>(
          d.N, d.H, gt.mutable_data_ptr<scalar_t>(), d.T * G, cprev, t == 0 ? d.H : d.T * d.H,
          c.select(1, t).mutable_data_ptr<scalar_t>(), d.T * d.H,
          h.select(1, t).mutable_data_ptr<scalar_t>(), d.T * d.H);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {h, c, gates};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_backward_cuda(
    const std::optional<Tensor>& dh_, const std::optional<Tensor>& dc_, const Tensor& x_,
    const Tensor& h0_, const Tensor& c0_, const Tensor& Wx_, const Tensor& Wh_, const Tensor& h_,
    const Tensor& c_, const Tensor& gates_) {
  const Tensor dh_in = defined_or_empty(dh_), dc_in = defined_or_empty(dc_);
  const Dims d = check_lstm_backward_inputs(dh_in, dc_in, x_, h0_, c0_, Wx_, Wh_, h_, c_, gates_);
  const bool has_dh = dh_in.defined(), has_dc = dc_in.defined();
  const c10::cuda::CUDAGuard guard(x_.device());
  const Tensor x = x_.contiguous(), h0 = h0_.contiguous(), c0 = c0_.contiguous(),
               Wx = Wx_.contiguous(), Wh = Wh_.contiguous(), h = h_.contiguous(),
               c = c_.contiguous(), gates = gates_.contiguous();
  const Tensor dh = has_dh ? dh_in.contiguous() : Tensor();
  const Tensor dc = has_dc ? dc_in.contiguous() : Tensor();
  const int64_t G = 4 * d.H;
  Tensor dgates = at::empty({d.N, d.T, G}, x.options());
  Tensor dh_rec = at::zeros({d.N, d.H}, x.options());
  Tensor dc_carry = at::zeros({d.N, d.H}, x.options());
  if (has_step_work(d)) {
    const auto stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_backward_cuda", [&] {
      using T = scalar_t;
      for (int64_t t = d.T - 1; t >= 0; --t) {
        Tensor dgt = dgates.select(1, t);
        const T* cprev = t == 0 ? c0.const_data_ptr<T>() : c.select(1, t - 1).const_data_ptr<T>();
        lstm_backward_pointwise<T><<<blocks_for(d.N * d.H), kThreads, 0, stream>>>(
            d.N, d.H, gates.select(1, t).const_data_ptr<T>(), d.T * G,
            c.select(1, t).const_data_ptr<T>(), d.T * d.H, cprev, t == 0 ? d.H : d.T * d.H,
            has_dh ? dh.select(1, t).const_data_ptr<T>() : nullptr, d.T * d.H,
            t == d.T - 1 ? nullptr : dh_rec.const_data_ptr<T>(),
            has_dc ? dc.select(1, t).const_data_ptr<T>() : nullptr, d.T * d.H,
            dc_carry.mutable_data_ptr<T>(), dgt.mutable_data_ptr<T>(), d.T * G);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        at::mm_out(dh_rec, dgt, Wh.t());
      }
    });
  }
  const Tensor dg2 = dgates.view({d.N * d.T, G});
  Tensor dx = at::mm(dg2, Wx.t()).view({d.N, d.T, d.D});
  Tensor dWx = at::mm(x.view({d.N * d.T, d.D}).t(), dg2);
  Tensor dWh = at::mm(previous_states(h0, h.contiguous().view({d.N * d.T, d.H}), SeqLayout::padded(d.N, d.T)).t(), dg2);
  Tensor db = dg2.sum(0);
  return {dx, dh_rec, dc_carry, dWx, dWh, db};
}

}  // namespace

TORCH_LIBRARY_IMPL(a3ext, CUDA, m) {
  m.impl("rnn_forward", &rnn_forward_cuda);
  m.impl("rnn_backward", &rnn_backward_cuda);
  m.impl("lstm_forward", &lstm_forward_cuda);
  m.impl("lstm_backward", &lstm_backward_cuda);
}

}  // namespace a3ext::cuda
