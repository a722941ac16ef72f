// The GEMM engines of the CPU kernels and the choice between them.
//
// blas   the Fortran BLAS that libtorch exports (MKL on x86 wheels), called
//        directly (blas.h): no dispatcher overhead, strided operands, alpha and
//        beta folded in; float32 and float64.
// onednn float32 only: oneDNN's GEMM (what torch.nn.LSTM and torch's linear
//        layers run on CPU), called through the dispatcher as
//        mkldnn::_linear_pointwise.
// blas_batch  the same BLAS, scheduled as one multi-threaded GEMM per time step
//        on the whole batch (the BLAS splits it; the pointwise pass runs
//        parallel over rows), for the time-loop ops; float32 and float64.
// mkl    MKL-specific routines found at run time (mkl_dl.h): the recurrent
//        weights packed once per call (cblas_sgemm_pack, float32; float64 has
//        no packed dgemm and runs the blas engine) and MKL's SYRK for the Gram
//        forward (float32 and float64).
// own    a3ext's own kernels where they beat the libraries, on AVX-512 CPUs: the
//        Gram forward (float32, float64; gram_tiles.cpp) and the recurrent step
//        GEMMs of the RNN / LSTM ops in float64 (the weight packed once per call,
//        the BLAS-batch schedule; panel_gemm.cpp); other ops and dtypes run blas.
// Which one is fastest depends on the CPU (on an AMD EPYC oneDNN won the
// per-step GEMM, on an Intel Xeon MKL's packed GEMM beat both others), so in
// `auto` mode an op measures: the first call of each shape class runs a short
// trial of every available engine on synthetic data of that shape and keeps
// the fastest for the rest of the process (select_engine). `blas`, `onednn`,
// `mkl`, `blas_batch` and `own` force one engine (the tests run every one; results
// agree to rounding).
#pragma once
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

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

enum class Engine : int { Blas = 0, OneDnn = 1, Mkl = 2, BlasBatch = 3, Own = 4 };
const char* engine_name(Engine e);

// The engine of one op call. `candidates`: the engines this op can run for this
// dtype and shape, Blas first (always present). Forced mode: the forced engine
// if it is a candidate; oneDNN / MKL forced for float32 work but unavailable in
// this torch is an error; otherwise (float64 on oneDNN, say) Blas. Auto mode:
// the engine measured fastest for `key` (the op, dtype and shape class); on the
// first call with that key every candidate runs one untimed `trial(engine,
// true)` (first-use costs), then `rounds` of `trial(engine, false)`, interleaved,
// each returning its timed runs in seconds; each run's minimum over the rounds
// counts, and `estimate` turns those minima into the seconds the real call would
// take (null: the single run's own); the two fastest, when within 30 % of each
// other, then run one more round (measured: without it
// the float32 LSTM backward class at N = 50 went to blas_batch in 1 of 4 fresh
// processes, with it to mkl in every one; +5-15 ms for the classes it touches).
// Under torch.use_deterministic_algorithms(True) auto
// mode measures nothing (timings differ between runs, and so would the rounding
// of the engine they pick): a stored choice for `key` (load_gemm_engine_choices)
// if there is one, else Blas.
// Rounds after the first and the extra round run only if the calibration, with
// the previous round's time added, stays within this (seconds): the issue's
// "under 50 ms once" (the layer ops also size their trials to a work budget).
constexpr double kOptionalRoundsUntil = 0.045;
Engine select_engine(const std::string& key, at::ScalarType dtype,
                     const std::vector<Engine>& candidates,
                     const std::function<std::vector<double>(Engine, bool)>& trial, int rounds = 2,
                     const std::function<double(const std::vector<double>&)>& estimate = nullptr,
                     const std::string& trial_shape = "");

// Seconds one call of f takes, less its minor page faults at this machine's cost
// per fault (measured once): a trial's fresh 2-4 MB outputs (dWx, dWh) fault on
// every page or on none depending on where glibc's heap happens to stand after
// the other engines' runs, the same for every engine, so the faults (~1 ms per 4 MB)
// are the allocator's, not the engine's. Measured before this: the float32 LSTM
// backward trial at (25,16,256,512) took 2.9-5.3 ms for one step of the mkl engine
// and 3.0 for three (1,024 faults in the one-step run), and auto chose blas_batch
// there in one bench run (1.09x torch.nn against 1.35x with mkl).
double seconds_of(const std::function<void()>& f);

// A new uninitialised contiguous tensor for an output of a kernel (h, c and the gates
// of a forward, dx, dWx and dWh of a backward), at::empty's, except on a thread
// inside select_engine's trials: there it reuses the memory of an earlier trial
// run's output that nothing holds any more (at least as large, at most twice).
// Fresh, each trial run's outputs met a page fault on every page (the float32 LSTM
// backward at (128,16,512,512): 2,016 faults a run, dWx and dWh, ~3 ms of a 4-9 ms
// run, a third of that class's calibration); seconds_of already left them out of
// the estimates, so the choices stay as they were and only the wall time shrinks.
at::Tensor new_output(at::IntArrayRef shape, const at::TensorOptions& options);

// Data for the trials: a new tensor of `shape` whose values fill [-a, a) (element i
// is 2 * frac((i + stream * 2^20) * golden ratio) - 1, times a, from 32-bit integer
// arithmetic): deterministic, no NaN or subnormal, and written in parallel at memory
// speed. Drawing the same data with a random generator (uniform_) took 12-18 ms of
// the 55-70 ms calibration of the largest LSTM backward class.
at::Tensor synthetic(at::IntArrayRef shape, double a, const at::TensorOptions& options, uint32_t stream);

// Whether the "own" engine runs here: this build has the AVX-512 kernels
// (gram_tiles.h, panel_gemm.h) and ATen's CPU capability (ATEN_CPU_CAPABILITY
// honoured) is AVX512.
bool own_engine_available();

// Whether the forced engine (not auto) is e.
bool engine_forced(Engine e);

// Smallest power of two >= n (shape classes for the calibration keys).
int64_t size_class(int64_t n);

}  // namespace a3ext::cpu
