// CPU kernels of the vanilla RNN and LSTM ops (schemas in csrc/a3ext.cpp).
//
// Schedule, as in the fastest RNN libraries (haste, cuDNN, onnxruntime):
//  forward   one GEMM projects the inputs of all N*T rows at once; the time
//            loop then does, per step, one recurrent GEMM that accumulates into
//            that buffer in place (beta = 1) and one fused, vectorized pointwise
//            pass that adds the bias (the oneDNN engine folds it into the input
//            GEMM instead) and writes h, c and the activated gates.
//  backward  the time loop only carries the recurrence (one pointwise pass and
//            one dh GEMM per step); dx, dWx, dWh and db are whole-sequence
//            GEMMs / reductions after the loop.
// Four GEMM engines (gemm_engine.h), chosen per shape class by measurement in
// `auto` mode (layer_engine). With BLAS the batch is split across threads once
// for the whole time loop (one parallel region per sequence, no barrier per
// step): rows of different sequences never interact, so each thread runs its own
// single-threaded BLAS calls on its rows, accumulating the recurrent term into
// the input projection in place (beta = 1). BLAS-batch runs one multi-threaded
// BLAS GEMM per step on the whole batch, then the pointwise pass in parallel
// over rows. With oneDNN (float32) each step's recurrent GEMM is one oneDNN call
// on the whole batch whose result the fused pointwise pass adds, in parallel
// over the batch; the input projection, dx and the weight gradients are oneDNN
// GEMMs too. MKL (float32) packs Wh once per call (and Wh^T for the backward's
// dh GEMM) and runs the BLAS-batch schedule on the packed copy, so no step
// repacks the weight; its whole-sequence GEMMs are BLAS calls.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <optional>
#include <type_traits>
#include <string>
#include <tuple>
#include <vector>

#include "blas.h"
#include "../rnn_common.h"
#include "config.h"
#include "gemm_engine.h"
#include "mkl_dl.h"
#include "panel_gemm.h"
#include "rnn_pointwise.h"
#include "workspace.h"

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

template <typename T>
const T* ptr(const Tensor& t) {
  return t.const_data_ptr<T>();
}
template <typename T>
T* mptr(Tensor& t) {
  return t.mutable_data_ptr<T>();
}

// The engines that can run a layer with input width D and hidden size H.
std::vector<Engine> rnn_candidates(at::ScalarType dtype, int64_t D, int64_t H) {
  std::vector<Engine> c{Engine::Blas};
  if (H == 0) return c;
  c.push_back(Engine::BlasBatch);
  if (dtype != at::kFloat) {
    if (dtype == at::kDouble && own_engine_available()) c.push_back(Engine::Own);
    return c;
  }
  // oneDNN has no primitive for empty GEMMs
  if (D > 0 && OneDnnLinear::get().available()) c.push_back(Engine::OneDnn);
  if (mkl_api().has_packed_sgemm()) c.push_back(Engine::Mkl);
  return c;
}

// Rows per fused block of the forward time loop (A3EXT_ROW_BLOCK; 0 = all rows
// of a thread): each block's recurrent GEMM is followed at once by its
// pointwise pass while the block's gates are in cache.
// MKL engine schedule: 0 = the BLAS schedule (rows split across threads for the
// whole sequence, single-threaded packed GEMMs), 1 = one multi-threaded packed
// GEMM per step on the whole batch (MKL splits the columns, so each core keeps
// its share of the packed weight in its own cache), then the pointwise pass in
// parallel over rows; 2 = the hidden units split across threads (forward only):
// each thread packs and keeps its own column blocks of Wh (its units' i, f, o,
// g columns) and per step runs their GEMMs on the whole batch and at once the
// pointwise pass of its units, one parallel region per step.
// A3EXT_MKL_SCHEDULE=rows|batch|cols (measurement aid).
int mkl_schedule() {
  static const int v = [] {
    const char* e = std::getenv("A3EXT_MKL_SCHEDULE");
    if (e == nullptr) return 1;
    const std::string s(e);
    return s == "rows" ? 0 : s == "cols" ? 2 : 1;
  }();
  return v;
}

int64_t row_block() {
  static const int64_t rb = [] {
    const char* v = std::getenv("A3EXT_ROW_BLOCK");
    return v == nullptr ? int64_t(0) : static_cast<int64_t>(std::atoll(v));
  }();
  return rb;
}

// G / H without dividing by zero (H = 0: empty outputs, nothing to compute).
int64_t gates_per_unit(int64_t H, int64_t G) { return H > 0 ? G / H : 1; }

// Rows per thread large enough that one step's work outweighs waking a thread.
int64_t row_grain(int64_t H, int64_t G, bool gemm_per_thread) {
  const int64_t work_per_row = gemm_per_thread ? 2 * H * G * H : 32 * G * H;
  return std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(1, work_per_row));
}

// Whether the forward's pointwise passes add the bias (BLAS and MKL engines: the
// input projection is then a plain GEMM, with no pass over the (N*T, G) buffer
// to lay the bias down first) or the input projection does (oneDNN).
bool bias_in_pointwise(Engine engine) { return engine != Engine::OneDnn; }

// out (N*T, G) = x (N*T, D) @ W (D, G), plus b unless bias_in_pointwise(engine).
Tensor input_projection(const Tensor& x, const Tensor& W, const Tensor& b, Engine engine) {
  const int64_t rows = x.size(0) * x.size(1), D = x.size(2), G = W.size(1);
  if (!bias_in_pointwise(engine) && rows > 0 && D > 0 && G > 0)
    return OneDnnLinear::get()(x.view({rows, D}), W.t(), b);
  Tensor out = new_output({rows, G}, x.options());
  if (rows == 0 || G == 0) return out;
  if (D == 0) {  // no inputs: the bias alone
    if (bias_in_pointwise(engine))
      out.zero_();
    else
      out.copy_(b.unsqueeze(0).expand({rows, G}));
    return out;
  }
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "input_projection", [&] {
    gemm<scalar_t>(false, false, rows, G, D, scalar_t(1), ptr<scalar_t>(x), D, ptr<scalar_t>(W), G,
                   scalar_t(0), out.mutable_data_ptr<scalar_t>(), G);
  });
  return out;
}

// dx (N, T, D) = dpre (N*T, G) @ W (D, G)^T.
Tensor input_gradient(const Tensor& dpre2d, const Tensor& W, int64_t N, int64_t T, Engine engine) {
  const bool onednn = engine == Engine::OneDnn;
  if (onednn && dpre2d.size(0) > 0 && W.size(0) > 0 && W.size(1) > 0)
    return OneDnnLinear::get()(dpre2d, W, std::nullopt).view({N, T, W.size(0)});
  Tensor dx = new_output({dpre2d.size(0), W.size(0)}, dpre2d.options());
  return at::mm_out(dx, dpre2d, W.t()).view({N, T, W.size(0)});
}

// Sequence ranges [bounds[i], bounds[i+1]) for the BLAS path's threads, with
// about the same number of (sequence, step) rows each (sorted packed sequences
// get shorter towards the end, so an even split by count would be unbalanced).
std::vector<int64_t> balanced_bounds(const SeqLayout& l, int64_t min_rows) {
  const int64_t B0 = l.steps() > 0 ? l.count[0] : 0;
  if (B0 == 0) return {0, 0};
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), B0 / std::max<int64_t>(1, min_rows)));
  std::vector<int64_t> len(B0, 0);  // steps each sequence runs
  int64_t total = 0;
  for (int64_t t = 0; t < l.steps(); ++t) {
    for (int64_t n = 0; n < l.count[t]; ++n) ++len[n];
    total += l.count[t];
  }
  std::vector<int64_t> bounds{0};
  int64_t acc = 0;
  for (int64_t n = 0; n < B0 && static_cast<int64_t>(bounds.size()) < chunks; ++n) {
    acc += len[n];
    if (acc * chunks >= total * static_cast<int64_t>(bounds.size())) bounds.push_back(n + 1);
  }
  if (bounds.back() != B0) bounds.push_back(B0);
  return bounds;
}

// Rows [n0, n0 + rows) of step t of a buffer of width W, as a (rows, W) view.
template <typename T>
Tensor step_rows(const T* base, const SeqLayout& l, int64_t t, int64_t n0, int64_t rows, int64_t W,
                 const Tensor& like) {
  return at::from_blob(const_cast<T*>(base) + l.row(t, n0) * W, {rows, W}, {l.stride * W, 1}, like.options());
}

#ifdef A3EXT_HAVE_AVX512
// The own engine's weight (panel_gemm.h): B = W (K x N, row stride ld) or W^T,
// packed once per op call into a pooled buffer, the panels split over the threads.
// Each thread first copies the step's rows of A into its own buffer with row
// stride K + 8: in the op's buffers the rows of a step lie T * H (or T * 4H)
// elements apart, a power of two at the usual sizes, and the micro-kernel's ten
// rows then fall into the same L1 sets (measured bare at (50 x 512) @ (512 x 2048):
// rows 64 KB apart 875 us, contiguous 815 us, stride K + 8 789 us).
class PanelWeight {
 public:
  PanelWeight(const double* W, int64_t K, int64_t N, int64_t ld, bool trans)
      : K_(K), N_(N), panels_(Workspace::elements<double>(panel_count(N) * K * kPanelCols)) {
    double* p = panels_.data<double>();
    at::parallel_for(0, panel_count(N), 1, [&](int64_t q0, int64_t q1) { panel_pack(W, K, N, ld, trans, p, q0, q1); });
  }
  // C (rows x N, row stride ldc) = A (rows x K, row stride lda) @ B, plus C if accumulate.
  void gemm(int64_t rows, const double* A, int64_t lda, double* C, int64_t ldc, bool accumulate) const {
    const double* p = panels_.data<double>();
    const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 17) / std::max<int64_t>(1, 2 * rows * K_ * kPanelCols));
    at::parallel_for(0, panel_count(N_), grain, [&](int64_t q0, int64_t q1) {
      // rows lying a multiple of 4 KB apart (the forward's h_{t-1}: T * H doubles) all
      // fall into one L1 set: copied by each thread that runs a chunk into a buffer
      // of its own (thread_local: right whatever ATen's threading backend; kept
      // between calls, so at most kMaxCopy elements: larger batches read A where it
      // lies). Other strides (the backward's padded GradientRows) are read in place.
      const int64_t ld = K_ + kRowPad;
      if (rows * ld > kMaxCopy || (lda * int64_t(sizeof(double))) % 4096 != 0) {
        panel_gemm_avx512(rows, K_, A, lda, p, q0, q1, N_, C, ldc, accumulate);
        return;
      }
      thread_local std::vector<double> rows_copy;
      if (static_cast<int64_t>(rows_copy.size()) < rows * ld) rows_copy.resize(rows * ld);
      double* a = rows_copy.data();
      for (int64_t i = 0; i < rows; ++i) std::copy(A + i * lda, A + i * lda + K_, a + i * ld);
      panel_gemm_avx512(rows, K_, a, ld, p, q0, q1, N_, C, ldc, accumulate);
    });
  }

 private:
  static constexpr int64_t kRowPad = 8;
  static constexpr int64_t kMaxCopy = int64_t(1) << 20;  // 8 MB a thread
  int64_t K_, N_;
  Workspace panels_;
};
#endif

// Forward time loop shared by the RNN and the LSTM and by both layouts. pre
// holds the input projections (width GH); pointwise(n0, rows, t, add, add_ld)
// finishes step t for sequences [n0, n0 + rows), adding `add` (the recurrent
// term of sequence n0, row stride add_ld) unless it is null, in which case it
// was accumulated into pre. h (width H) must be written by the pointwise pass.
template <typename T, typename Pointwise>
void forward_time_loop(Engine engine, const Tensor& h0, const Tensor& Wh, T* pre, const T* h,
                       const SeqLayout& l, const Pointwise& pointwise) {
  const int64_t H = Wh.size(0), GH = Wh.size(1);
  if (engine == Engine::OneDnn) {
    // oneDNN takes the weight as (out, in); a transposed view is as fast as a copy.
    const Tensor WhT = Wh.t();
    for (int64_t t = 0; t < l.steps() && l.count[t] > 0; ++t) {
      const int64_t n = l.count[t];
      const Tensor prev = t == 0 ? h0.narrow(0, 0, n) : step_rows<T>(h, l, t - 1, 0, n, H, h0);
      const Tensor rec = OneDnnLinear::get()(prev, WhT, std::nullopt);
      const T* rp = rec.const_data_ptr<T>();
      at::parallel_for(0, n, row_grain(H, gates_per_unit(H, GH), false), [&](int64_t n0, int64_t n1) {
        pointwise(n0, n1 - n0, t, rp + n0 * GH, GH, 0, H);
      });
    }
    return;
  }
  // BLAS / MKL: each thread runs its own sequences through every step (no
  // barrier); step_gemm(rows, prev, ld_prev, out, ld_out): out += prev @ Wh.
  auto run = [&](const auto& step_gemm) {
    const T* h0p = ptr<T>(h0);
    const std::vector<int64_t> bounds = balanced_bounds(l, row_grain(H, gates_per_unit(H, GH), true));
    const int64_t rb = row_block();
    at::parallel_for(0, static_cast<int64_t>(bounds.size()) - 1, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t n0 = bounds[c], n1 = bounds[c + 1];
        for (int64_t t = 0; t < l.steps(); ++t) {
          const int64_t rows = std::min(n1, l.count[t]) - n0;
          if (rows <= 0) break;
          const int64_t block = rb > 0 ? rb : rows;
          for (int64_t r0 = 0; r0 < rows; r0 += block) {  // GEMM then pointwise, block by block
            const int64_t r = std::min(block, rows - r0);
            const T* prev = t == 0 ? h0p + (n0 + r0) * H : h + l.row(t - 1, n0 + r0) * H;
            step_gemm(r, prev, t == 0 ? H : l.stride * H, pre + l.row(t, n0 + r0) * GH, l.stride * GH);
            pointwise(n0 + r0, r, t, nullptr, 0, 0, H);
          }
        }
      }
    });
  };
  // One multi-threaded GEMM per step on the whole batch, then the pointwise
  // pass in parallel over rows.
  auto run_batch = [&](const auto& step_gemm) {
    const T* h0p = ptr<T>(h0);
    for (int64_t t = 0; t < l.steps() && l.count[t] > 0; ++t) {
      const int64_t n = l.count[t];
      const T* prev = t == 0 ? h0p : h + l.row(t - 1, 0) * H;
      step_gemm(n, prev, t == 0 ? H : l.stride * H, pre + l.row(t, 0) * GH, l.stride * GH);
      at::parallel_for(0, n, row_grain(H, gates_per_unit(H, GH), false),
                       [&](int64_t n0, int64_t n1) { pointwise(n0, n1 - n0, t, nullptr, 0, 0, H); });
    }
  };
  // Hidden units split across threads (float32, MKL): see mkl_schedule().
  // (generic: instantiated for float only; out, hs, h0s are pre, h, h0's data)
  auto run_cols = [&](const auto* whp, auto* out, const auto* hs, const auto* h0s) {
    const int64_t gpu = gates_per_unit(H, GH);
    const int64_t P = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), (H + 15) / 16));
    std::vector<int64_t> ub{0};  // unit block bounds, multiples of 16
    for (int64_t k = 1; k < P; ++k) ub.push_back(std::min(H, (k * H / P + 15) / 16 * 16));
    ub.push_back(H);
    const int64_t nb = static_cast<int64_t>(ub.size()) - 1;
    const int64_t nmax = l.steps() > 0 ? l.count[0] : 1;
    std::vector<std::unique_ptr<PackedB>> packs(nb * gpu);
    at::parallel_for(0, nb, 1, [&](int64_t k0, int64_t k1) {  // each thread packs its own blocks
      for (int64_t k = k0; k < k1; ++k)
        for (int64_t g = 0; g < gpu; ++g)
          if (ub[k + 1] > ub[k])
            packs[k * gpu + g] = std::make_unique<PackedB>(whp + g * H + ub[k], H, ub[k + 1] - ub[k], GH, false, nmax);
    });
    for (int64_t t = 0; t < l.steps() && l.count[t] > 0; ++t) {
      const int64_t n = l.count[t];
      const auto* prev = t == 0 ? h0s : hs + l.row(t - 1, 0) * H;
      const int64_t ldp = t == 0 ? H : l.stride * H;
      at::parallel_for(0, nb, 1, [&](int64_t k0, int64_t k1) {
        for (int64_t k = k0; k < k1; ++k) {
          if (ub[k + 1] == ub[k]) continue;
          for (int64_t g = 0; g < gpu; ++g)
            packs[k * gpu + g]->gemm(n, prev, ldp, 1.f, out + l.row(t, 0) * GH + g * H + ub[k], l.stride * GH);
          pointwise(0, n, t, nullptr, 0, ub[k], ub[k + 1] - ub[k]);
        }
      });
    }
  };
#ifdef A3EXT_HAVE_AVX512
  if constexpr (std::is_same_v<T, double>) {
    if (engine == Engine::Own && H > 0 && GH > 0) {
      const PanelWeight packed(ptr<T>(Wh), H, GH, GH, /*trans=*/false);
      run_batch([&](int64_t rows, const T* prev, int64_t ldp, T* out, int64_t ldo) {
        packed.gemm(rows, prev, ldp, out, ldo, /*accumulate=*/true);
      });
      return;
    }
  }
#endif
  if constexpr (std::is_same_v<T, float>) {
    if (engine == Engine::Mkl && H > 0 && GH > 0) {
      const PackedB packed(ptr<T>(Wh), H, GH, GH, /*trans=*/false, l.steps() > 0 ? l.count[0] : 1);
      auto step_gemm = [&](int64_t rows, const T* prev, int64_t ldp, T* out, int64_t ldo) {
        packed.gemm(rows, prev, ldp, 1.f, out, ldo);
      };
      if (mkl_schedule() == 1) {
        run_batch(step_gemm);
        return;
      }
      if (mkl_schedule() == 2) {
        run_cols(ptr<T>(Wh), pre, h, ptr<T>(h0));
        return;
      }
      run(step_gemm);
      return;
    }
  }
  const T* whp = ptr<T>(Wh);
  auto step_gemm = [&](int64_t rows, const T* prev, int64_t ldp, T* out, int64_t ldo) {
    gemm<T>(false, false, rows, GH, H, T(1), prev, ldp, whp, GH, T(1), out, ldo);
  };
  if (engine == Engine::BlasBatch) {
    run_batch(step_gemm);
    return;
  }
  run(step_gemm);
}

// Backward time loop shared by the RNN and the LSTM and by both layouts.
// pointwise(n0, rows, t, dh_rec) writes dpre (width GH) for step t and
// sequences [n0, n0 + rows), given dh_rec (row stride H, starting at sequence
// n0), the gradient reaching h_t through step t + 1, or null where those
// sequences end at step t. Writes dh0 (B, H) (zero for empty sequences).
// (A column split of the BLAS path -- each thread owning a block of hidden units
// for all sequences, one barrier per step -- measured only 4 % faster at 50 x 512
// float64 and was not kept.)
template <typename T, typename Pointwise>
void backward_time_loop(Engine engine, const Tensor& Wh, Tensor& dpre, Tensor& dh0, const SeqLayout& l,
                        const Pointwise& pointwise) {
  const int64_t H = Wh.size(0), GH = Wh.size(1);
  const int64_t ldd = dpre.stride(0);  // GH, or more (GradientRows)
  T* dpp = mptr<T>(dpre);
  T* dh0p = mptr<T>(dh0);
  if (engine == Engine::OneDnn) {
    Tensor rec;
    int64_t rec_rows = 0;  // sequences of step t + 1, the ones with a recurrent gradient
    for (int64_t t = l.steps() - 1; t >= 0; --t) {
      const int64_t n = l.count[t];
      if (n == 0) continue;
      const T* rp = rec_rows > 0 ? rec.const_data_ptr<T>() : nullptr;
      at::parallel_for(0, n, row_grain(H, gates_per_unit(H, GH), false), [&](int64_t n0, int64_t n1) {
        const int64_t mid = std::clamp(rec_rows, n0, n1);
        if (mid > n0) pointwise(n0, mid - n0, t, rp + n0 * H);
        if (n1 > mid) pointwise(mid, n1 - mid, t, nullptr);
      });
      rec = OneDnnLinear::get()(step_rows<T>(dpp, l, t, 0, n, GH, dpre), Wh, std::nullopt);  // dpre_t @ Wh^T (ldd = GH)
      rec_rows = n;
    }
    if (rec_rows > 0) dh0.narrow(0, 0, rec_rows).copy_(rec);
    return;
  }
  // BLAS / MKL: step_gemm(rows, dpre_rows, ld, dh_rec): dh_rec = dpre_rows @ Wh^T.
  auto run = [&](const auto& step_gemm) {
    const std::vector<int64_t> bounds = balanced_bounds(l, row_grain(H, gates_per_unit(H, GH), true));
    at::parallel_for(0, static_cast<int64_t>(bounds.size()) - 1, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t n0 = bounds[c], n1 = bounds[c + 1];
        // sequences that have not started yet (going backward) stay zero
        const auto dh_rec_ws = Workspace::elements<T>((n1 - n0) * H);
        T* dh_rec = dh_rec_ws.template data<T>();
        std::fill(dh_rec, dh_rec + (n1 - n0) * H, T(0));
        int64_t prev_rows = 0;
        for (int64_t t = l.steps() - 1; t >= 0; --t) {
          const int64_t rows = std::min(n1, l.count[t]) - n0;
          if (rows <= 0) continue;
          pointwise(n0, rows, t, prev_rows > 0 ? dh_rec : nullptr);
          step_gemm(rows, dpp + l.row(t, n0) * ldd, l.stride * ldd, dh_rec);
          prev_rows = rows;
        }
        std::copy(dh_rec, dh_rec + prev_rows * H, dh0p + n0 * H);
      }
    });
  };
  // One multi-threaded dh GEMM per step on the whole batch, after the pointwise
  // pass in parallel over rows.
  auto run_batch = [&](const auto& step_gemm) {
    // the recurrent gradient (rows x H) from the pool: 64-byte aligned, no fresh
    // allocation (no difference measured against a std::vector, swapping the built
    // modules in alternating processes)
    const auto rec_ws = Workspace::elements<T>((l.steps() > 0 ? l.count[0] : 0) * H);
    T* rec = rec_ws.template data<T>();
    int64_t rec_rows = 0;  // sequences of step t + 1, the ones with a recurrent gradient
    for (int64_t t = l.steps() - 1; t >= 0; --t) {
      const int64_t n = l.count[t];
      if (n == 0) continue;
      at::parallel_for(0, n, row_grain(H, gates_per_unit(H, GH), false), [&](int64_t n0, int64_t n1) {
        const int64_t mid = std::clamp(rec_rows, n0, n1);
        if (mid > n0) pointwise(n0, mid - n0, t, rec + n0 * H);
        if (n1 > mid) pointwise(mid, n1 - mid, t, nullptr);
      });
      step_gemm(n, dpp + l.row(t, 0) * ldd, l.stride * ldd, rec);
      rec_rows = n;
    }
    std::copy(rec, rec + rec_rows * H, dh0p);
  };
#ifdef A3EXT_HAVE_AVX512
  if constexpr (std::is_same_v<T, double>) {
    if (engine == Engine::Own && H > 0 && GH > 0) {
      const PanelWeight packedT(ptr<T>(Wh), GH, H, GH, /*trans=*/true);
      run_batch([&](int64_t rows, const T* d, int64_t ld, T* out) { packedT.gemm(rows, d, ld, out, H, false); });
      return;
    }
  }
#endif
  if constexpr (std::is_same_v<T, float>) {
    if (engine == Engine::Mkl && H > 0 && GH > 0) {
      const PackedB packedT(ptr<T>(Wh), GH, H, GH, /*trans=*/true, l.steps() > 0 ? l.count[0] : 1);
      auto step_gemm = [&](int64_t rows, const T* d, int64_t ld, T* out) { packedT.gemm(rows, d, ld, 0.f, out, H); };
      if (mkl_schedule() == 1)
        run_batch(step_gemm);
      else
        run(step_gemm);
      return;
    }
  }
  const T* whp = ptr<T>(Wh);
  auto step_gemm = [&](int64_t rows, const T* d, int64_t ld, T* out) {
    gemm<T>(false, true, rows, H, GH, T(1), d, ld, whp, GH, T(0), out, H);
  };
  if (engine == Engine::BlasBatch)
    run_batch(step_gemm);
  else
    run(step_gemm);
}

// dW (K, G) = a (N*T, K)^T @ dpre (N*T, G), the weight gradient of a whole sequence.
Tensor weight_gradient(const Tensor& a2d, const Tensor& dpre2d, Engine engine) {
  const bool onednn = engine == Engine::OneDnn;
  if (onednn && a2d.size(0) > 0 && a2d.size(1) > 0 && dpre2d.size(1) > 0)
    return OneDnnLinear::get()(a2d.t(), dpre2d.t(), std::nullopt);
  Tensor dW = new_output({a2d.size(1), dpre2d.size(1)}, dpre2d.options());
  return at::mm_out(dW, a2d.t(), dpre2d);
}

// dx, dWx, dWh, db from the pre-activation gradients dpre (rows, G): whole-sequence
// GEMMs / reductions after the time loop.
std::tuple<Tensor, Tensor, Tensor, Tensor> weight_gradients(const Tensor& dpre, const Tensor& x2d,
                                                            const Tensor& h0, const Tensor& h2d,
                                                            const Tensor& Wx, const SeqLayout& l, Engine engine) {
  const int64_t rows = x2d.size(0);
  Tensor dx = input_gradient(dpre, Wx, rows, 1, engine).view({rows, x2d.size(1)});
  Tensor dWx = weight_gradient(x2d, dpre, engine);
  const Workspace prev(h2d.sizes(), h2d.scalar_type());  // h_{t-1} of every row
  Tensor prev_t = prev.tensor();
  previous_states_into(prev_t, h0, h2d, l);
  Tensor dWh = weight_gradient(prev_t, dpre, engine);
  return {dx, dWx, dWh, dpre.sum(0)};
}

// The pre-activation gradients (rows, width) of a backward, from the pool (never
// returned). Rows are 64 bytes longer than width except for oneDNN: a time step's
// rows, read side by side by the step GEMM, lie T rows apart, and at a power-of-two
// width (T * 4H doubles = 256 KB at T = 16, H = 512) they all fell into one L1 set,
// so the own engine copied them to a padded buffer in every thread at every step
// (50 x 2048 doubles a thread a step at (50, 16, 256, 512)); with the padding it
// reads them where they lie (PanelWeight::gemm).
struct GradientRows {
  GradientRows(int64_t rows, int64_t width, at::ScalarType dtype, Engine engine)
      : ws({rows, width + (engine == Engine::OneDnn || width == 0 ? 0 : 64 / int64_t(c10::elementSize(dtype)))},
           dtype),
        view(ws.tensor().narrow(1, 0, width)) {}
  Workspace ws;
  Tensor view;  // (rows, width), row stride ws's width
};

// ---------------------------------------------------------------------------
// The kernels proper, on row buffers (rows, width) in either layout: x2d (rows, D),
// h0 / c0 (B, H). The padded ops view (N, T, .) as (N*T, .); the packed ops pass
// their buffers as they are.
struct Rnn {
  static Tensor forward(const Tensor& x2d, const Tensor& h0, const Tensor& Wx, const Tensor& Wh,
                        const Tensor& b, const SeqLayout& l, Engine engine) {
    const int64_t H = h0.size(1);
    Tensor h = input_projection(x2d.unsqueeze(1), Wx, b, engine).view({x2d.size(0), H});  // then tanh in place
    AT_DISPATCH_FLOATING_TYPES(x2d.scalar_type(), "rnn_forward", [&] {
      using T = scalar_t;
      const auto& k = rnn_pointwise_kernels<T>();
      T* hp = mptr<T>(h);
      const T* bp = bias_in_pointwise(engine) ? ptr<T>(b) : nullptr;
      forward_time_loop<T>(engine, h0, Wh, hp, hp, l,
                           [&](int64_t n0, int64_t rows, int64_t t, const T* add, int64_t add_ld, int64_t u0,
                               int64_t J) {
                             k.rnn_forward(rows, J, hp + l.row(t, n0) * H + u0, l.stride * H,
                                           add == nullptr ? nullptr : add + u0, add_ld,
                                           bp == nullptr ? nullptr : bp + u0);
                           });
    });
    return h;
  }

  static std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> backward(
      const Tensor& dh, const Tensor& x2d, const Tensor& h0, const Tensor& Wx, const Tensor& Wh,
      const Tensor& h, const SeqLayout& l, Engine engine) {
    const int64_t H = h0.size(1);
    const GradientRows da_rows(h.size(0), H, h.scalar_type(), engine);  // pre-activation gradients
    Tensor da = da_rows.view;
    Tensor dh0 = at::zeros_like(h0);
    AT_DISPATCH_FLOATING_TYPES(x2d.scalar_type(), "rnn_backward", [&] {
      using T = scalar_t;
      const auto& k = rnn_pointwise_kernels<T>();
      const T* hp = ptr<T>(h);
      const T* dhp = ptr<T>(dh);
      T* dap = mptr<T>(da);
      const int64_t ld = l.stride * H;
      const int64_t lda = da.stride(0);
      backward_time_loop<T>(engine, Wh, da, dh0, l, [&](int64_t n0, int64_t rows, int64_t t, const T* dh_rec) {
        const int64_t off = l.row(t, n0) * H;
        k.rnn_backward(rows, H, hp + off, ld, dhp + off, ld, dh_rec, dap + l.row(t, n0) * lda, l.stride * lda);
      });
    });
    auto [dx, dWx, dWh, db] = weight_gradients(da, x2d, h0, h, Wx, l, engine);
    return {dx, dh0, dWx, dWh, db};
  }
};

struct Lstm {
  static std::tuple<Tensor, Tensor, Tensor> forward(const Tensor& x2d, const Tensor& h0, const Tensor& c0,
                                                    const Tensor& Wx, const Tensor& Wh, const Tensor& b,
                                                    const SeqLayout& l, Engine engine) {
    const int64_t H = h0.size(1), G = 4 * H, rows_all = x2d.size(0);
    // gates start as x @ Wx + b and end as the activated gates saved for backward
    Tensor gates = input_projection(x2d.unsqueeze(1), Wx, b, engine).view({rows_all, G});
    Tensor h = new_output({rows_all, H}, x2d.options());
    Tensor c = new_output({rows_all, H}, x2d.options());
    AT_DISPATCH_FLOATING_TYPES(x2d.scalar_type(), "lstm_forward", [&] {
      using T = scalar_t;
      const auto& k = rnn_pointwise_kernels<T>();
      T* gp = mptr<T>(gates);
      T* hp = mptr<T>(h);
      T* cp = mptr<T>(c);
      const T* c0p = ptr<T>(c0);
      const T* bp = bias_in_pointwise(engine) ? ptr<T>(b) : nullptr;
      const int64_t ld = l.stride * H;
      forward_time_loop<T>(engine, h0, Wh, gp, hp, l,
                           [&](int64_t n0, int64_t rows, int64_t t, const T* add, int64_t add_ld, int64_t u0,
                               int64_t J) {
                             const T* cprev = (t == 0 ? c0p + n0 * H : cp + l.row(t - 1, n0) * H) + u0;
                             const int64_t row = l.row(t, n0);
                             k.lstm_forward(rows, J, H, gp + row * G + u0, l.stride * G,
                                            add == nullptr ? nullptr : add + u0, add_ld,
                                            bp == nullptr ? nullptr : bp + u0, cprev, t == 0 ? H : ld,
                                            cp + row * H + u0, ld, hp + row * H + u0, ld);
                           });
    });
    return {h, c, gates};
  }

  // dh / dc: upstream gradients of every h / c (undefined = zero).
  static std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> backward(
      const Tensor& dh, const Tensor& dc, const Tensor& x2d, const Tensor& h0, const Tensor& c0,
      const Tensor& Wx, const Tensor& Wh, const Tensor& h, const Tensor& c, const Tensor& gates,
      const SeqLayout& l, Engine engine) {
    const int64_t H = h0.size(1), G = 4 * H;
    const GradientRows dgates_rows(gates.size(0), G, gates.scalar_type(), engine);
    Tensor dgates = dgates_rows.view;
    Tensor dh0 = at::zeros_like(h0);
    Tensor dc0 = at::zeros_like(h0);  // carries dc_t * f_t back through time
    AT_DISPATCH_FLOATING_TYPES(x2d.scalar_type(), "lstm_backward", [&] {
      using T = scalar_t;
      const auto& k = rnn_pointwise_kernels<T>();
      const T* gp = ptr<T>(gates);
      const T* cp = ptr<T>(c);
      const T* c0p = ptr<T>(c0);
      const T* dhp = dh.defined() ? ptr<T>(dh) : nullptr;
      const T* dcp = dc.defined() ? ptr<T>(dc) : nullptr;
      T* dgp = mptr<T>(dgates);
      const int64_t ldg = dgates.stride(0);
      T* dcc = mptr<T>(dc0);
      const int64_t ld = l.stride * H;
      backward_time_loop<T>(engine, Wh, dgates, dh0, l, [&](int64_t n0, int64_t rows, int64_t t, const T* dh_rec) {
        const int64_t row = l.row(t, n0);
        const T* cprev = t == 0 ? c0p + n0 * H : cp + l.row(t - 1, n0) * H;
        k.lstm_backward(rows, H, gp + row * G, l.stride * G, cp + row * H, ld, cprev, t == 0 ? H : ld,
                        dhp == nullptr ? nullptr : dhp + row * H, ld, dh_rec,
                        dcp == nullptr ? nullptr : dcp + row * H, ld, dcc + n0 * H, dgp + row * ldg, l.stride * ldg);
      });
    });
    auto [dx, dWx, dWh, db] = weight_gradients(dgates, x2d, h0, h, Wx, l, engine);
    return {dx, dh0, dc0, dWx, dWh, db};
  }
};

// ---------------------------------------------------------------------------
// The engine of a layer call (gemm_engine.h): in `auto` mode the one measured
// fastest for this shape class, calibrated on its first call by running the
// kernel itself with each engine on the call's weights and synthetic activations,
// the batch capped at 64 rows: one step and Tc = 3..8 steps (about 6e8 FLOPs) timed, the cost of the real
// T steps extrapolated from the two (so that an engine's per-call cost, such
// as packing the weight, counts as often as it will be paid), one untimed step
// first (each engine's fastest one-step and Tc-step runs over the rounds are
// extrapolated; page faults and fresh outputs are not counted and the close
// engines get one more round, see select_engine); the heaviest classes run Tc = 2
// and fewer rows (the work budget below). The whole calibration of each of the 32
// classes of bench_rnn took 1-46 ms on 2 cores (3 runs; before the budget, the
// trials' output reuse and the caller's weights, the N = 128 x H = 512 LSTM
// backward took 61-113 ms). Keyed by cell, pass, dtype, batch and steps rounded up
// to powers of two, D and H. Wx and Wh: the call's weights, contiguous.
Engine layer_engine(bool lstm, bool backward, at::ScalarType dtype, int64_t B, int64_t T, int64_t D,
                    int64_t H, const Tensor& Wx, const Tensor& Wh) {
  const std::vector<Engine> candidates =
      B > 0 && T > 0 ? rnn_candidates(dtype, D, H) : std::vector<Engine>{Engine::Blas};
  const int64_t G = (lstm ? 4 : 1) * H;
  int64_t Bc = std::min<int64_t>(B, 64);
  // a trial row-step's work in float32 FLOPs: float64 GEMMs run at half the rate, so
  // the float64 classes (three engines with `own`) cost no more than float32's
  const double row_flops = 2.0 * (D + H) * G * (backward ? 3 : 1) * (dtype == at::kDouble ? 2 : 1);
  const double step_flops = Bc * row_flops;
  int64_t Tc = T <= 1 ? 1
                      : std::min<int64_t>(std::max<int64_t>(3, static_cast<int64_t>(6e8 / std::max(1.0, step_flops))),
                                          std::min<int64_t>(T, 8));
  const int rounds = step_flops * (Tc + 1) > 8e8 ? 1 : 2;
  // The whole calibration's work at most kBudget FLOPs (warm-up runs, the first
  // round and the extra round; later rounds are timed out by select_engine): the
  // heaviest classes run Tc = 2, then fewer rows (not under 16). 1.35e10 keeps the
  // float32 LSTM backward at (50, 16, 256, 512) as it was (1.32e10, 40-44 ms here)
  // and brings the N = 128 x H = 512 LSTM backward classes from 61-70 (float32) and
  // 87-91 ms (float64) to 48 and 29 rows.
  constexpr double kBudget = 1.35e10;
  const double E = static_cast<double>(candidates.size());
  auto work = [&](int64_t rows, int64_t tc) {
    const double run = T <= 1 ? 1.0 : 1.0 + static_cast<double>(tc);  // steps of one timed trial
    return static_cast<double>(rows) * row_flops * (E * (1.0 + run) + 2.0 * run);
  };
  if (T > 1 && work(Bc, Tc) > kBudget) Tc = std::min<int64_t>(Tc, 2);
  if (work(Bc, Tc) > kBudget)
    Bc = std::max<int64_t>(std::min<int64_t>(B, 16), static_cast<int64_t>(Bc * kBudget / work(Bc, Tc)));
  const std::string key = std::string(lstm ? "lstm" : "rnn") + (backward ? "_bwd " : "_fwd ") +
                          c10::toString(dtype) + " N" + std::to_string(size_class(B)) +
                          " T" + std::to_string(size_class(T)) + " D" + std::to_string(D) + " H" + std::to_string(H);
  // The trials run on the call's own weights (contiguous: the ops make them so once,
  // for the trials and the call; their size is what the engines differ on, and
  // synthetic weights of the largest classes cost 3-7 ms of fresh pages and filling)
  // and on synthetic activations (gemm_engine.h), made on the first (untimed) trial
  // run: x, h0, c0, b, then for the backward h, c, gates, dh.
  std::vector<Tensor> in;
  auto run = [&](Engine e, int64_t steps) {
    if (in.empty()) {
      const auto o = at::TensorOptions().dtype(dtype);
      uint32_t stream = 0;
      auto r = [&](at::IntArrayRef s, double a) { return synthetic(s, a, o, ++stream); };
      in = {r({Bc * Tc, D}, 1.0), r({Bc, H}, 0.5), r({Bc, H}, 0.5), r({G}, 0.1)};
      if (backward) in.insert(in.end(), {r({Bc * Tc, H}, 0.5), r({Bc * Tc, H}, 0.5), r({Bc * Tc, G}, 0.5), r({Bc * Tc, H}, 1.0)});
    }
    const SeqLayout l = SeqLayout::padded(Bc, steps);
    auto rows = [&](const Tensor& t) { return t.narrow(0, 0, Bc * steps); };  // row buffers of `steps` steps
    if (lstm && !backward) Lstm::forward(rows(in[0]), in[1], in[2], Wx, Wh, in[3], l, e);
    if (lstm && backward)
      Lstm::backward(rows(in[7]), Tensor(), rows(in[0]), in[1], in[2], Wx, Wh, rows(in[4]), rows(in[5]),
                     rows(in[6]), l, e);
    if (!lstm && !backward) Rnn::forward(rows(in[0]), in[1], Wx, Wh, in[3], l, e);
    if (!lstm && backward) Rnn::backward(rows(in[7]), rows(in[0]), in[1], Wx, Wh, rows(in[4]), l, e);
  };
  // The extrapolation uses each engine's fastest one-step and fastest Tc-step run over
  // the rounds, not the best of the rounds' extrapolations (a one-step run slowed by
  // a passing disturbance shrinks that round's slope, and (T - 1) / (Tc - 1) times
  // the shrunk slope can make a slower engine win), and Tc targets 6e8 FLOPs (3e8
  // before): at (25,16,256,512) float32 forward the slope over Tc = 3 steps varied
  // +-25 % between processes and auto took blas_batch (0.97x torch.nn, against mkl's
  // 1.2x) in 1-2 of 6 runs; with Tc = 7 mkl won 14 of 14, for ~7 ms more calibration.
  auto trial = [&](Engine e, bool warmup) -> std::vector<double> {
    const double t1 = seconds_of([&] { run(e, 1); });
    if (warmup || T <= 1) return {t1};
    return {t1, seconds_of([&] { run(e, Tc); })};
  };
  auto estimate = [&](const std::vector<double>& fastest) {  // (t1) or (t1, tc)
    if (fastest.size() < 2) return fastest[0];
    return fastest[0] + static_cast<double>(T - 1) * std::max(0.0, fastest[1] - fastest[0]) / static_cast<double>(Tc - 1);
  };
  return select_engine(key, dtype, candidates, trial, rounds, estimate,
                       "rows=" + std::to_string(Bc) + " steps=" + std::to_string(Tc));
}

// ---------------------------------------------------------------------------
// The registered ops: checks, contiguity, layout.
// (N, T, W) -> (N*T, W)
Tensor flat(const Tensor& t) { return t.contiguous().view({t.size(0) * t.size(1), t.size(2)}); }

// Outputs with no elements (no rows, no steps or H = 0) are returned before the
// time loops, whose bookkeeping is sized by N, T or B (which may then be huge).
// The gradients of (x, h0[, c0], Wx, Wh, b) when nothing depends on them.
template <typename... Shapes>
auto zero_gradients(const Tensor& like, Shapes... shapes) {
  return std::make_tuple(at::zeros(shapes, like.options())...);
}

Tensor rnn_forward_cpu(const Tensor& x, const Tensor& h0, const Tensor& Wx, const Tensor& Wh, const Tensor& b) {
  const Dims d = check_forward_inputs("a3ext.rnn", x, h0, Wx, Wh, &b, 1);
  if (d.N == 0 || d.T == 0 || d.H == 0) return at::empty({d.N, d.T, d.H}, x.options());
  const Tensor Wxc = Wx.contiguous(), Whc = Wh.contiguous();  // once, for the trials and the call
  const Engine e = layer_engine(false, false, x.scalar_type(), d.N, d.T, d.D, d.H, Wxc, Whc);
  return Rnn::forward(flat(x), h0.contiguous(), Wxc, Whc, b.contiguous(),
                      SeqLayout::padded(d.N, d.T), e)
      .view({d.N, d.T, d.H});
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> rnn_backward_cpu(const Tensor& dh, const Tensor& x,
                                                                    const Tensor& h0, const Tensor& Wx,
                                                                    const Tensor& Wh, const Tensor& h) {
  const Dims d = check_rnn_backward_inputs(dh, x, h0, Wx, Wh, h);
  if (d.N == 0 || d.T == 0 || d.H == 0)
    return zero_gradients(x, at::IntArrayRef{d.N, d.T, d.D}, at::IntArrayRef{d.N, d.H},
                          at::IntArrayRef{d.D, d.H}, at::IntArrayRef{d.H, d.H}, at::IntArrayRef{d.H});
  const Tensor Wxc = Wx.contiguous(), Whc = Wh.contiguous();  // once, for the trials and the call
  const Engine e = layer_engine(false, true, x.scalar_type(), d.N, d.T, d.D, d.H, Wxc, Whc);
  auto [dx, dh0, dWx, dWh, db] = Rnn::backward(flat(dh), flat(x), h0.contiguous(), Wxc,
                                               Whc, flat(h), SeqLayout::padded(d.N, d.T), e);
  return {dx.view({d.N, d.T, d.D}), dh0, dWx, dWh, db};
}

std::tuple<Tensor, Tensor, Tensor> lstm_forward_cpu(const Tensor& x, const Tensor& h0, const Tensor& c0,
                                                    const Tensor& Wx, const Tensor& Wh, const Tensor& b) {
  const Dims d = check_lstm_forward_inputs(x, h0, c0, Wx, Wh, b);
  if (d.N == 0 || d.T == 0 || d.H == 0)
    return {at::empty({d.N, d.T, d.H}, x.options()), at::empty({d.N, d.T, d.H}, x.options()),
            at::empty({d.N, d.T, 4 * d.H}, x.options())};
  const Tensor Wxc = Wx.contiguous(), Whc = Wh.contiguous();  // once, for the trials and the call
  const Engine e = layer_engine(true, false, x.scalar_type(), d.N, d.T, d.D, d.H, Wxc, Whc);
  auto [h, c, gates] = Lstm::forward(flat(x), h0.contiguous(), c0.contiguous(), Wxc, Whc,
                                     b.contiguous(), SeqLayout::padded(d.N, d.T), e);
  return {h.view({d.N, d.T, d.H}), c.view({d.N, d.T, d.H}), gates.view({d.N, d.T, 4 * d.H})};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_backward_cpu(
    const std::optional<Tensor>& dh_, const std::optional<Tensor>& dc_, const Tensor& x, const Tensor& h0,
    const Tensor& c0, const Tensor& Wx, const Tensor& Wh, const Tensor& h, const Tensor& c, const Tensor& gates) {
  const Tensor dh = defined_or_empty(dh_), dc = defined_or_empty(dc_);
  const Dims d = check_lstm_backward_inputs(dh, dc, x, h0, c0, Wx, Wh, h, c, gates);
  if (d.N == 0 || d.T == 0 || d.H == 0)
    return zero_gradients(x, at::IntArrayRef{d.N, d.T, d.D}, at::IntArrayRef{d.N, d.H}, at::IntArrayRef{d.N, d.H},
                          at::IntArrayRef{d.D, 4 * d.H}, at::IntArrayRef{d.H, 4 * d.H}, at::IntArrayRef{4 * d.H});
  const Tensor Wxc = Wx.contiguous(), Whc = Wh.contiguous();  // once, for the trials and the call
  const Engine e = layer_engine(true, true, x.scalar_type(), d.N, d.T, d.D, d.H, Wxc, Whc);
  auto [dx, dh0, dc0, dWx, dWh, db] =
      Lstm::backward(dh.defined() ? flat(dh) : Tensor(), dc.defined() ? flat(dc) : Tensor(), flat(x),
                     h0.contiguous(), c0.contiguous(), Wxc, Whc, flat(h), flat(c),
                     flat(gates), SeqLayout::padded(d.N, d.T), e);
  return {dx.view({d.N, d.T, d.D}), dh0, dc0, dWx, dWh, db};
}

// Packed sequences (the layout of torch.nn.utils.rnn.PackedSequence, see
// rnn_common.h): no work at all for padding. Step t touches only its
// batch_sizes[t] rows, the first sequences of the sorted batch, so every
// per-step GEMM and pointwise pass runs on a prefix of the rows, and the input
// projection and the whole-sequence gradient GEMMs run on the P real rows.
Tensor rnn_packed_forward_cpu(const Tensor& x, const Tensor& batch_sizes, const Tensor& h0, const Tensor& Wx,
                              const Tensor& Wh, const Tensor& b) {
  const PackedDims d = check_packed_inputs("a3ext.rnn_packed", x, batch_sizes, h0, Wx, Wh, &b, 1);
  if (d.P == 0 || d.H == 0) return at::empty({d.P, d.H}, x.options());
  const Tensor Wxc = Wx.contiguous(), Whc = Wh.contiguous();  // once, for the trials and the call
  const Engine e = layer_engine(false, false, x.scalar_type(), d.B, d.T, d.D, d.H, Wxc, Whc);
  return Rnn::forward(x.contiguous(), h0.contiguous(), Wxc, Whc, b.contiguous(),
                      SeqLayout::packed(d), e);
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> rnn_packed_backward_cpu(
    const Tensor& dh, const Tensor& x, const Tensor& batch_sizes, const Tensor& h0, const Tensor& Wx,
    const Tensor& Wh, const Tensor& h) {
  const PackedDims d = check_rnn_packed_backward_inputs(dh, x, batch_sizes, h0, Wx, Wh, h);
  if (d.P == 0 || d.H == 0)
    return zero_gradients(x, at::IntArrayRef{d.P, d.D}, at::IntArrayRef{d.B, d.H}, at::IntArrayRef{d.D, d.H},
                          at::IntArrayRef{d.H, d.H}, at::IntArrayRef{d.H});
  const Tensor Wxc = Wx.contiguous(), Whc = Wh.contiguous();  // once, for the trials and the call
  const Engine e = layer_engine(false, true, x.scalar_type(), d.B, d.T, d.D, d.H, Wxc, Whc);
  return Rnn::backward(dh.contiguous(), x.contiguous(), h0.contiguous(), Wxc, Whc,
                       h.contiguous(), SeqLayout::packed(d), e);
}

std::tuple<Tensor, Tensor, Tensor> lstm_packed_forward_cpu(const Tensor& x, const Tensor& batch_sizes,
                                                           const Tensor& h0, const Tensor& c0, const Tensor& Wx,
                                                           const Tensor& Wh, const Tensor& b) {
  const PackedDims d = check_lstm_packed_forward_inputs(x, batch_sizes, h0, c0, Wx, Wh, b);
  if (d.P == 0 || d.H == 0)
    return {at::empty({d.P, d.H}, x.options()), at::empty({d.P, d.H}, x.options()),
            at::empty({d.P, 4 * d.H}, x.options())};
  const Tensor Wxc = Wx.contiguous(), Whc = Wh.contiguous();  // once, for the trials and the call
  const Engine e = layer_engine(true, false, x.scalar_type(), d.B, d.T, d.D, d.H, Wxc, Whc);
  return Lstm::forward(x.contiguous(), h0.contiguous(), c0.contiguous(), Wxc, Whc,
                       b.contiguous(), SeqLayout::packed(d), e);
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_packed_backward_cpu(
    const std::optional<Tensor>& dh_, const std::optional<Tensor>& dc_, const Tensor& x,
    const Tensor& batch_sizes, const Tensor& h0, const Tensor& c0, const Tensor& Wx, const Tensor& Wh,
    const Tensor& h, const Tensor& c, const Tensor& gates) {
  const Tensor dh = defined_or_empty(dh_), dc = defined_or_empty(dc_);
  const PackedDims d = check_lstm_packed_backward_inputs(dh, dc, x, batch_sizes, h0, c0, Wx, Wh, h, c, gates);
  if (d.P == 0 || d.H == 0)
    return zero_gradients(x, at::IntArrayRef{d.P, d.D}, at::IntArrayRef{d.B, d.H}, at::IntArrayRef{d.B, d.H},
                          at::IntArrayRef{d.D, 4 * d.H}, at::IntArrayRef{d.H, 4 * d.H}, at::IntArrayRef{4 * d.H});
  const Tensor Wxc = Wx.contiguous(), Whc = Wh.contiguous();  // once, for the trials and the call
  const Engine e = layer_engine(true, true, x.scalar_type(), d.B, d.T, d.D, d.H, Wxc, Whc);
  return Lstm::backward(dh.defined() ? dh.contiguous() : Tensor(), dc.defined() ? dc.contiguous() : Tensor(),
                        x.contiguous(), h0.contiguous(), c0.contiguous(), Wxc, Whc,
                        h.contiguous(), c.contiguous(), gates.contiguous(), SeqLayout::packed(d), e);
}

}  // namespace

TORCH_LIBRARY_IMPL(a3ext, CPU, m) {
  m.impl("rnn_forward", &rnn_forward_cpu);
  m.impl("rnn_backward", &rnn_backward_cpu);
  m.impl("lstm_forward", &lstm_forward_cpu);
  m.impl("lstm_backward", &lstm_backward_cpu);
  m.impl("rnn_packed_forward", &rnn_packed_forward_cpu);
  m.impl("rnn_packed_backward", &rnn_packed_backward_cpu);
  m.impl("lstm_packed_forward", &lstm_packed_forward_cpu);
  m.impl("lstm_packed_backward", &lstm_packed_backward_cpu);
}

}  // namespace a3ext::cpu
