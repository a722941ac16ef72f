// Fused, vectorized pointwise passes of the RNN and LSTM time loops.
//
// rnn_pointwise.cpp is compiled once per CPU instruction set (DEFAULT, AVX2,
// AVX512, using ATen's Vectorized<T> and its SLEEF transcendental functions);
// rnn_pointwise_kernels<T>() picks the best one the running CPU supports, the
// same way ATen's own DispatchStub does (ATEN_CPU_CAPABILITY is honoured).
//
// Every pass works on `rows` batch rows; each tensor argument is a row-major
// matrix given by a pointer and its row stride (in elements), so a time step
// is addressed in place inside the (N, T, ...) buffers without copies.
#pragma once
#include <cstdint>

namespace a3ext::cpu {

template <typename T>
struct RnnPointwiseKernels {
  // LSTM step forward. gates (rows, 4H): pre-activations [i f o g] on entry
  // (plus `add`, the recurrent term, when not null, and `bias` (4H, the same
  // for every row) when not null), activated gates
  // [sigmoid(i) sigmoid(f) sigmoid(o) tanh(g)] on exit. c_prev may be null (zero).
  // c = f * c_prev + i * g; h = o * tanh(c). Works on the first J units of each
  // gate block (the blocks are H apart; J = H for all of them): pointers may be
  // offset to a block of units u0.. (gates + u0, c + u0, h + u0, ...).
  void (*lstm_forward)(int64_t rows, int64_t J, int64_t H, T* gates, int64_t gates_stride, const T* add,
                       int64_t add_stride, const T* bias, const T* c_prev, int64_t c_prev_stride, T* c,
                       int64_t c_stride, T* h, int64_t h_stride);
  // LSTM step backward. Reads the activated gates, c and c_prev; dh (upstream
  // gradient of h_t) and dh_rec (gradient arriving through h_t from step t+1,
  // contiguous rows x H) and dc_up (upstream gradient of c_t) may be null.
  // dc_carry (contiguous rows x H) holds dc_{t+1} * f_{t+1} on entry and
  // dc_t * f_t on exit. Writes the pre-activation gradients to dgates.
  void (*lstm_backward)(int64_t rows, int64_t H, const T* gates, int64_t gates_stride,
                        const T* c, int64_t c_stride, const T* c_prev, int64_t c_prev_stride,
                        const T* dh, int64_t dh_stride, const T* dh_rec, const T* dc_up,
                        int64_t dc_up_stride, T* dc_carry, T* dgates, int64_t dgates_stride);
  // RNN step forward in place: a = tanh(a + add + bias) (rows, H; bias (H) the
  // same for every row); add and bias may be null.
  void (*rnn_forward)(int64_t rows, int64_t H, T* a, int64_t a_stride, const T* add,
                      int64_t add_stride, const T* bias);
  // RNN step backward: da = (dh + dh_rec) * (1 - h^2); dh and dh_rec may be null.
  void (*rnn_backward)(int64_t rows, int64_t H, const T* h, int64_t h_stride, const T* dh,
                       int64_t dh_stride, const T* dh_rec, T* da, int64_t da_stride);
};

// The kernels for the running CPU, and the name of the instruction set chosen.
template <typename T>
const RnnPointwiseKernels<T>& rnn_pointwise_kernels();
const char* rnn_pointwise_isa();

}  // namespace a3ext::cpu
