// Compiled several times, with CPU_CAPABILITY set to DEFAULT, AVX2 or AVX512
// and the matching compiler flags (see CMakeLists.txt). Everything here lives
// in a namespace named after the instruction set so the copies never collide.
#include "rnn_pointwise.h"

#include <ATen/cpu/vec/vec.h>

#include <algorithm>

#ifndef CPU_CAPABILITY
#error "rnn_pointwise.cpp must be compiled with CPU_CAPABILITY defined"
#endif
#define A3EXT_CAT_(a, b) a##b
#define A3EXT_CAT(a, b) A3EXT_CAT_(a, b)
#define A3EXT_STR_(a) #a
#define A3EXT_STR(a) A3EXT_STR_(a)

namespace a3ext::cpu {
namespace CPU_CAPABILITY {

template <typename T>
using Vec = at::vec::Vectorized<T>;

template <typename T>
inline Vec<T> sigmoid(const Vec<T>& x) {
  const Vec<T> one(T(1));
  return one / (one + x.neg().exp());
}

template <typename T>
inline Vec<T> load(const T* p, int64_t n) {
  return n == Vec<T>::size() ? Vec<T>::loadu(p) : Vec<T>::loadu(p, n);
}
template <typename T>
inline Vec<T> load_or_zero(const T* p, int64_t n) {
  return p == nullptr ? Vec<T>(T(0)) : load(p, n);
}
template <typename T>
inline void store(const Vec<T>& v, T* p, int64_t n) {
  if (n == Vec<T>::size())
    v.store(p);
  else
    v.store(p, n);
}

template <typename T>
void lstm_forward(int64_t rows, int64_t J, int64_t H, T* gates, int64_t gs, const T* add, int64_t as,
                  const T* c_prev, int64_t cps, T* c, int64_t cs, T* h, int64_t hs) {
  constexpr int64_t W = Vec<T>::size();
  for (int64_t r = 0; r < rows; ++r) {
    T* gi = gates + r * gs;
    T* gf = gi + H;
    T* go = gi + 2 * H;
    T* gg = gi + 3 * H;
    const T* ar = add == nullptr ? nullptr : add + r * as;
    const T* cp = c_prev == nullptr ? nullptr : c_prev + r * cps;
    T* cr = c + r * cs;
    T* hr = h + r * hs;
    for (int64_t j = 0; j < J; j += W) {
      const int64_t n = std::min(W, J - j);
      Vec<T> ai = load(gi + j, n), af = load(gf + j, n), ao = load(go + j, n), ag = load(gg + j, n);
      if (ar != nullptr) {
        ai = ai + load(ar + j, n);
        af = af + load(ar + H + j, n);
        ao = ao + load(ar + 2 * H + j, n);
        ag = ag + load(ar + 3 * H + j, n);
      }
      const Vec<T> i = sigmoid(ai);
      const Vec<T> f = sigmoid(af);
      const Vec<T> o = sigmoid(ao);
      const Vec<T> g = ag.tanh();
      const Vec<T> cn = f * load_or_zero(cp == nullptr ? nullptr : cp + j, n) + i * g;
      store(i, gi + j, n);
      store(f, gf + j, n);
      store(o, go + j, n);
      store(g, gg + j, n);
      store(cn, cr + j, n);
      store(o * cn.tanh(), hr + j, n);
    }
  }
}

template <typename T>
void lstm_backward(int64_t rows, int64_t H, const T* gates, int64_t gs, const T* c, int64_t cs,
                   const T* c_prev, int64_t cps, const T* dh, int64_t dhs, const T* dh_rec,
                   const T* dc_up, int64_t dcs, T* dc_carry, T* dgates, int64_t dgs) {
  constexpr int64_t W = Vec<T>::size();
  const Vec<T> one(T(1));
  for (int64_t r = 0; r < rows; ++r) {
    const T* gi = gates + r * gs;
    const T* cr = c + r * cs;
    const T* cp = c_prev == nullptr ? nullptr : c_prev + r * cps;
    const T* dhr = dh == nullptr ? nullptr : dh + r * dhs;
    const T* dhrec = dh_rec == nullptr ? nullptr : dh_rec + r * H;
    const T* dcu = dc_up == nullptr ? nullptr : dc_up + r * dcs;
    T* dcc = dc_carry + r * H;
    T* dgi = dgates + r * dgs;
    for (int64_t j = 0; j < H; j += W) {
      const int64_t n = std::min(W, H - j);
      const Vec<T> i = load(gi + j, n);
      const Vec<T> f = load(gi + H + j, n);
      const Vec<T> o = load(gi + 2 * H + j, n);
      const Vec<T> g = load(gi + 3 * H + j, n);
      const Vec<T> tc = load(cr + j, n).tanh();
      const Vec<T> dht = load_or_zero(dhr == nullptr ? nullptr : dhr + j, n) +
                         load_or_zero(dhrec == nullptr ? nullptr : dhrec + j, n);
      const Vec<T> dct = load(dcc + j, n) + load_or_zero(dcu == nullptr ? nullptr : dcu + j, n) +
                         dht * o * (one - tc * tc);
      const Vec<T> cprev = load_or_zero(cp == nullptr ? nullptr : cp + j, n);
      store(dct * f, dcc + j, n);
      store(dct * g * i * (one - i), dgi + j, n);
      store(dct * cprev * f * (one - f), dgi + H + j, n);
      store(dht * tc * o * (one - o), dgi + 2 * H + j, n);
      store(dct * i * (one - g * g), dgi + 3 * H + j, n);
    }
  }
}

template <typename T>
void rnn_forward(int64_t rows, int64_t H, T* a, int64_t as, const T* add, int64_t adds) {
  constexpr int64_t W = Vec<T>::size();
  for (int64_t r = 0; r < rows; ++r) {
    T* ar = a + r * as;
    const T* dr = add == nullptr ? nullptr : add + r * adds;
    for (int64_t j = 0; j < H; j += W) {
      const int64_t n = std::min(W, H - j);
      store((load(ar + j, n) + load_or_zero(dr == nullptr ? nullptr : dr + j, n)).tanh(), ar + j, n);
    }
  }
}

template <typename T>
void rnn_backward(int64_t rows, int64_t H, const T* h, int64_t hs, const T* dh, int64_t dhs,
                  const T* dh_rec, T* da, int64_t das) {
  constexpr int64_t W = Vec<T>::size();
  const Vec<T> one(T(1));
  for (int64_t r = 0; r < rows; ++r) {
    const T* hr = h + r * hs;
    const T* dhr = dh == nullptr ? nullptr : dh + r * dhs;
    const T* dhrec = dh_rec == nullptr ? nullptr : dh_rec + r * H;
    T* dar = da + r * das;
    for (int64_t j = 0; j < H; j += W) {
      const int64_t n = std::min(W, H - j);
      const Vec<T> hv = load(hr + j, n);
      const Vec<T> d = load_or_zero(dhr == nullptr ? nullptr : dhr + j, n) +
                       load_or_zero(dhrec == nullptr ? nullptr : dhrec + j, n);
      store(d * (one - hv * hv), dar + j, n);
    }
  }
}

}  // namespace CPU_CAPABILITY

#define A3EXT_KERNELS(T)                                                                   \
  RnnPointwiseKernels<T> {                                                                 \
    &CPU_CAPABILITY::lstm_forward<T>, &CPU_CAPABILITY::lstm_backward<T>,                   \
        &CPU_CAPABILITY::rnn_forward<T>, &CPU_CAPABILITY::rnn_backward<T>                 \
  }
extern const RnnPointwiseKernels<float> A3EXT_CAT(rnn_pointwise_f32_, CPU_CAPABILITY);
extern const RnnPointwiseKernels<double> A3EXT_CAT(rnn_pointwise_f64_, CPU_CAPABILITY);
const RnnPointwiseKernels<float> A3EXT_CAT(rnn_pointwise_f32_, CPU_CAPABILITY) = A3EXT_KERNELS(float);
const RnnPointwiseKernels<double> A3EXT_CAT(rnn_pointwise_f64_, CPU_CAPABILITY) = A3EXT_KERNELS(double);

}  // namespace a3ext::cpu
