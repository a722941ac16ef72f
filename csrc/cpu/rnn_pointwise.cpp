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

// tanh for the time loops. float32: a rational minimax approximation on
// [-7.9053, 7.9053] (odd degree-13 numerator over even degree-6 denominator, the
// coefficients of Eigen's generic_fast_tanh_float; |x| < 4e-4 returns x): a few
// FMAs and one division instead of SLEEF's 1-ULP tanhf16 (the float32 LSTM
// forward is 8-13 % faster with it), within 6 float32 ULP of tanh (3.4e-7
// absolute; measured over 2e6 points in [-12, 12] and 1e5 tiny ones).
// NaN stays NaN, +-inf gives +-1.
// float64: Cephes' tanh -- |x| < 0.625: x + x^3 P(x^2) / Q(x^2) (degrees 2 and 3),
// otherwise (e - 1) / (e + 1) with e = exp(2|x|) and x's sign -- both branches per
// vector and one division (the small branch as x (Q + x^2 P) / Q): SLEEF's 1-ULP
// tanh (its double-double expm1) cost 10x its exp and ~8 % of the float64 LSTM
// forward (this one: forward 5 % faster, RNN forward 5-20 %). Within 2.25 float64
// ULP of tanh (mean 0.32; against long double over 4e6 points in [-25, 25], most
// of them in [-1, 1], and 1e5 tiny ones down to 1e-320); NaN stays NaN, +-inf
// gives +-1.
template <typename T>
inline Vec<T> tanh(const Vec<T>& x) {
  return x.tanh();
}
template <>
inline Vec<double> tanh(const Vec<double>& x) {
  using V = Vec<double>;
  const V s = x * x;
  V p = at::vec::fmadd(s, V(-9.64399179425052238628e-1), V(-9.92877231001918586564e1));
  p = at::vec::fmadd(s, p, V(-1.61468768441708447952e3));
  V q = s + V(1.12811678491632931402e2);
  q = at::vec::fmadd(s, q, V(2.23548839060100448583e3));
  q = at::vec::fmadd(s, q, V(4.84406305325125486048e3));
  const V ax = x.abs();
  // exp(2|x|) with |x| capped at 20: tanh rounds to +-1 from |x| ~ 19.06 on, and the
  // cap keeps exp from overflowing (inf / inf) above |x| ~ 354
  const V e = at::vec::minimum(ax + ax, V(40.0)).exp();
  const V one(1.0);
  const V large = ax >= V(0.625);
  const V num = V::blendv(x * at::vec::fmadd(s, p, q), V::blendv(e - one, one - e, x < V(0.0)), large);
  const V den = V::blendv(q, e + one, large);
  return num / den;
}
// The float32 rational tanh without its tiny-input branch (x * P(x^2) / Q(x^2) on
// x clamped to [-7.9053, 7.9053]). NaN: ATen's AVX2 and AVX-512 clamp keeps it
// (min/max return their second operand, the input, when either is NaN); the
// DEFAULT build's clamp drops it, so callers pass their result through keep_nan.
inline Vec<float> rational_tanh(const Vec<float>& a) {
  using V = Vec<float>;
  const V x = at::vec::clamp(a, V(-7.90531110763549805f), V(7.90531110763549805f));
  const V x2 = x * x;
  V p = at::vec::fmadd(x2, V(-2.76076847742355e-16f), V(2.00018790482477e-13f));
  p = at::vec::fmadd(x2, p, V(-8.60467152213735e-11f));
  p = at::vec::fmadd(x2, p, V(5.12229709037114e-08f));
  p = at::vec::fmadd(x2, p, V(1.48572235717979e-05f));
  p = at::vec::fmadd(x2, p, V(6.37261928875436e-04f));
  p = at::vec::fmadd(x2, p, V(4.89352455891786e-03f));
  p = x * p;
  V q = at::vec::fmadd(x2, V(1.19825839466702e-06f), V(1.18534705686654e-04f));
  q = at::vec::fmadd(x2, q, V(2.26843463243900e-03f));
  q = at::vec::fmadd(x2, q, V(4.89352518554385e-03f));
  return p / q;
}
// `r`, a function of `a` computed through rational_tanh, with NaN inputs giving NaN
// on every build (a blend only where the clamp dropped them; x != x only for NaN).
inline Vec<float> keep_nan(const Vec<float>& r, const Vec<float>& a) {
#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
  return r;
#else
  return Vec<float>::blendv(r, a, a != a);
#endif
}
template <>
inline Vec<float> tanh(const Vec<float>& a) {
  return keep_nan(Vec<float>::blendv(rational_tanh(a), a, a.abs() < Vec<float>(0.0004f)), a);
}

// sigmoid(x) = 1 / (1 + exp(-x)) in float64 (SLEEF's exp, one division).
// float32: 0.5 + 0.5 tanh(x / 2) with the rational tanh: no exp, and a third off the
// pointwise pass of the float32 LSTM forward (26.1 -> 17.3 us for 25 x 512 units on
// one core, with keep_nan; measured). Within 2e-7 absolute of sigmoid (half the tanh's 3.4e-7 plus
// rounding): the relative error grows where sigmoid is tiny (x < -10), as with any
// absolute-error bound, and it is exactly 0 below x = -15.81 (sigmoid < 1.4e-7 there).
// NaN stays NaN (see rational_tanh), +-inf gives 1 and 0.
template <typename T>
inline Vec<T> sigmoid(const Vec<T>& x) {
  const Vec<T> one(T(1));
  return one / (one + x.neg().exp());
}
template <>
inline Vec<float> sigmoid(const Vec<float>& x) {
  using V = Vec<float>;
  const V half(0.5f);
  return keep_nan(at::vec::fmadd(half, rational_tanh(x * half), half), x);
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
                  const T* bias, const T* c_prev, int64_t cps, T* c, int64_t cs, T* h, int64_t hs) {
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
      if (bias != nullptr) {
        ai = ai + load(bias + j, n);
        af = af + load(bias + H + j, n);
        ao = ao + load(bias + 2 * H + j, n);
        ag = ag + load(bias + 3 * H + j, n);
      }
      const Vec<T> i = sigmoid(ai);
      const Vec<T> f = sigmoid(af);
      const Vec<T> o = sigmoid(ao);
      const Vec<T> g = tanh(ag);
      const Vec<T> cn = f * load_or_zero(cp == nullptr ? nullptr : cp + j, n) + i * g;
      store(i, gi + j, n);
      store(f, gf + j, n);
      store(o, go + j, n);
      store(g, gg + j, n);
      store(cn, cr + j, n);
      store(o * tanh(cn), hr + j, n);
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
      const Vec<T> tc = tanh(load(cr + j, n));
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
void rnn_forward(int64_t rows, int64_t H, T* a, int64_t as, const T* add, int64_t adds, const T* bias) {
  constexpr int64_t W = Vec<T>::size();
  for (int64_t r = 0; r < rows; ++r) {
    T* ar = a + r * as;
    const T* dr = add == nullptr ? nullptr : add + r * adds;
    for (int64_t j = 0; j < H; j += W) {
      const int64_t n = std::min(W, H - j);
      store(tanh(load(ar + j, n) + load_or_zero(dr == nullptr ? nullptr : dr + j, n) +
                 load_or_zero(bias == nullptr ? nullptr : bias + j, n)),
            ar + j, n);
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
