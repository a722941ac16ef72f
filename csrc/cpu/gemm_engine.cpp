#include "gemm_engine.h"

#include <torch/library.h>

#include <ATen/Parallel.h>
#include <c10/util/strides.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <numeric>
#include <sstream>
#ifdef __linux__
#include <sys/mman.h>
#include <sys/resource.h>
#endif

#include "config.h"
#include "gram_tiles.h"
#include "mkl_dl.h"
#include "rnn_pointwise.h"

namespace a3ext::cpu {
namespace {
std::atomic<int> g_gemm_backend{0};  // index into kBackendNames
constexpr const char* kBackendNames[] = {"auto", "blas", "onednn", "mkl", "blas_batch", "own"};
constexpr int kBackends = 6;

struct Choice {
  Engine engine;
  std::vector<std::pair<Engine, double>> seconds;  // measured per candidate
  double calibration_seconds;
  bool stored = false;  // set from outside (a file of choices), not measured here
  std::string trial_shape;  // "rows=R steps=S" of the RNN / LSTM trials ("" otherwise)
};
std::mutex g_mutex;                   // guards g_choices and serialises calibrations
std::map<std::string, Choice> g_choices;

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

const char* engine_name(Engine e) {
  switch (e) {
    case Engine::Blas: return "blas";
    case Engine::OneDnn: return "onednn";
    case Engine::Mkl: return "mkl";
    case Engine::BlasBatch: return "blas_batch";
    case Engine::Own: return "own";
  }
  return "?";
}

bool own_engine_available() {
#ifdef A3EXT_HAVE_AVX512
  static const bool ok = std::string(rnn_pointwise_isa()) == "AVX512";
  return ok;
#else
  return false;
#endif
}

bool engine_forced(Engine e) { return g_gemm_backend.load() == static_cast<int>(e) + 1; }

int64_t size_class(int64_t n) {
  int64_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

namespace {
// Minor page faults of the process so far (0 where getrusage is missing).
int64_t minor_faults() {
#ifdef __linux__
  struct rusage u;
  if (getrusage(RUSAGE_SELF, &u) == 0) return static_cast<int64_t>(u.ru_minflt);
#endif
  return 0;
}

#ifdef __linux__
// `bytes` of fresh anonymous memory (nullptr if the mapping fails); munmap it.
void* map_fresh(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}
// One write a 4 KB page: every page of fresh memory faults once.
void touch_pages(void* p, size_t bytes) {
  for (size_t b = 0; b < bytes; b += 4096) static_cast<volatile char*>(p)[b] = 1;
}
#endif

// Seconds one minor page fault costs here: 1024 fresh pages touched, the fastest of
// three tries, measured once per process (~1 us on the 2-core Xeon).
double fault_seconds() {
  static const double s = [] {
    double best = 0;
#ifdef __linux__
    const size_t bytes = size_t(4) << 20;
    for (int i = 0; i < 3; ++i) {
      void* p = map_fresh(bytes);
      if (p == nullptr) return 0.0;
      const int64_t f0 = minor_faults();
      const double t0 = now();
      touch_pages(p, bytes);
      const double t = now() - t0;
      const int64_t faults = minor_faults() - f0;
      munmap(p, bytes);
      if (faults > 0 && (best == 0 || t / faults < best)) best = t / faults;
    }
#endif
    return best;
  }();
  return s;
}

// The outputs of the trial runs of the select_engine call on this thread
// (new_output), and the time and page faults spent preparing fresh ones, which
// seconds_of leaves out.
struct TrialOutputs {
  std::vector<c10::Storage> buffers;
  double prepare_seconds = 0;
  int64_t prepare_faults = 0;
};
thread_local TrialOutputs* t_trial_outputs = nullptr;

// While alive, this thread's kernel outputs come from a TrialOutputs (nested: restored).
class TrialOutputScope {
 public:
  TrialOutputScope() : previous_(t_trial_outputs) { t_trial_outputs = &outputs_; }
  ~TrialOutputScope() { t_trial_outputs = previous_; }
  TrialOutputScope(const TrialOutputScope&) = delete;
  TrialOutputScope& operator=(const TrialOutputScope&) = delete;

 private:
  TrialOutputs outputs_;
  TrialOutputs* previous_;
};
}  // namespace

at::Tensor new_output(at::IntArrayRef shape, const at::TensorOptions& options) {
  if (t_trial_outputs == nullptr) return at::empty(shape, options);
  const size_t bytes = static_cast<size_t>(c10::multiply_integers(shape)) * options.dtype().itemsize();
  for (const c10::Storage& s : t_trial_outputs->buffers)
    if (s.use_count() == 1 && s.nbytes() >= bytes && s.nbytes() <= 2 * bytes) {
      return at::empty({0}, options).set_(s, 0, shape, c10::contiguous_strides(shape));
    }
  // a fresh buffer, its pages touched now and the time left out of the trial's
  // (so that a run meeting a new output size costs no more than one reusing a buffer)
  const double t0 = now();
  const int64_t f0 = minor_faults();
  at::Tensor t = at::empty(shape, options);
#ifdef __linux__
  if (bytes > 0) touch_pages(t.mutable_data_ptr(), bytes);
#endif
  t_trial_outputs->buffers.push_back(t.storage());
  t_trial_outputs->prepare_faults += minor_faults() - f0;
  t_trial_outputs->prepare_seconds += now() - t0;
  return t;
}

Engine select_engine(const std::string& key, at::ScalarType dtype, const std::vector<Engine>& candidates,
                     const std::function<std::vector<double>(Engine, bool)>& trial, int rounds,
                     const std::function<double(const std::vector<double>&)>& estimate,
                     const std::string& trial_shape) {
  auto has = [&](Engine e) { return std::find(candidates.begin(), candidates.end(), e) != candidates.end(); };
  const int backend = g_gemm_backend.load();
  if (backend != 0) {
    const Engine forced = static_cast<Engine>(backend - 1);
    if (has(forced)) return forced;
    if (dtype == at::kFloat && forced == Engine::OneDnn)
      TORCH_CHECK(OneDnnLinear::get().available(),
                  "a3ext: the 'onednn' GEMM backend was requested but this torch has no usable "
                  "oneDNN (torch.backends.mkldnn)");
    if (dtype == at::kFloat && forced == Engine::Mkl)
      TORCH_CHECK(mkl_api().has_packed_sgemm(),
                  "a3ext: the 'mkl' GEMM backend was requested but this torch exports no MKL "
                  "packed GEMM (cblas_sgemm_pack)");
    return Engine::Blas;
  }
  if (candidates.size() == 1) return candidates[0];
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = g_choices.find(key);
  if (at::globalContext().deterministicAlgorithms()) {
    // torch.use_deterministic_algorithms(True): no timing decides anything, so a
    // run repeats bit for bit: a stored choice (load_gemm_engine_choices) or blas.
    if (it != g_choices.end() && it->second.stored && has(it->second.engine)) return it->second.engine;
    return candidates[0];
  }
  if (it != g_choices.end() && has(it->second.engine)) return it->second.engine;
  // Calibrate: one untimed run each (first-use costs: oneDNN's primitive cache,
  // page faults), then `rounds` interleaved timed rounds; each run's minimum counts.
  const double t0 = now();
  const TrialOutputScope trial_outputs;
  std::vector<std::vector<double>> fastest(candidates.size());
  auto timed_round = [&](size_t i) {  // each run's minimum over the rounds
    const std::vector<double> t = trial(candidates[i], false);
    if (fastest[i].empty()) fastest[i] = t;
    for (size_t j = 0; j < t.size() && j < fastest[i].size(); ++j) fastest[i][j] = std::min(fastest[i][j], t[j]);
  };
  for (size_t i = 0; i < candidates.size(); ++i) trial(candidates[i], true);
  // Rounds after the first, and the extra round below, only while the calibration
  // stays within kOptionalRoundsUntil by the previous round's wall time.
  std::vector<double> wall(candidates.size(), 0.0);  // each engine's last timed round
  auto fits = [&](double more) { return now() - t0 + more <= kOptionalRoundsUntil; };
  for (int r = 0; r < rounds; ++r) {
    if (r > 0 && !fits(std::accumulate(wall.begin(), wall.end(), 0.0))) break;
    for (size_t i = 0; i < candidates.size(); ++i) {
      const double w0 = now();
      timed_round(i);
      wall[i] = now() - w0;
    }
  }
  std::vector<double> best(candidates.size());
  auto estimate_all = [&] {
    for (size_t i = 0; i < candidates.size(); ++i)
      best[i] = fastest[i].empty() ? 1e30 : estimate ? estimate(fastest[i]) : fastest[i][0];
  };
  estimate_all();
  // One more round for the two fastest estimates when they are within 30 % of each
  // other: single timed runs on a shared machine move by 10-50 %, and the heaviest
  // classes get only one round above.
  std::vector<size_t> order(candidates.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return best[a] < best[b]; });
  if (order.size() > 1 && best[order[1]] <= 1.3 * best[order[0]] && fits(wall[order[0]] + wall[order[1]])) {
    timed_round(order[0]);
    timed_round(order[1]);
    estimate_all();
  }
  size_t win = 0;
  for (size_t i = 1; i < candidates.size(); ++i)
    if (best[i] < best[win]) win = i;
  Choice c{candidates[win], {}, now() - t0, false, trial_shape};
  for (size_t i = 0; i < candidates.size(); ++i) c.seconds.emplace_back(candidates[i], best[i]);
  g_choices[key] = c;
  return c.engine;
}

double seconds_of(const std::function<void()>& f) {
  const double fs = fault_seconds();
  const TrialOutputs none;
  const TrialOutputs& prep = t_trial_outputs != nullptr ? *t_trial_outputs : none;
  const double p0 = prep.prepare_seconds;
  const int64_t pf0 = prep.prepare_faults;
  const int64_t f0 = minor_faults();
  const double s = now();
  f();
  const double t = now() - s - (prep.prepare_seconds - p0);
  const int64_t faults = minor_faults() - f0 - (prep.prepare_faults - pf0);
  return std::max(0.0, t - fs * static_cast<double>(faults));
}

at::Tensor synthetic(at::IntArrayRef shape, double a, const at::TensorOptions& options, uint32_t stream) {
  at::Tensor out = at::empty(shape, options);
  const int64_t n = out.numel();
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "a3ext_synthetic", [&] {
    scalar_t* p = out.mutable_data_ptr<scalar_t>();
    const uint32_t offset = stream << 20;
    const scalar_t scale = static_cast<scalar_t>(2.0 * a / 4294967296.0), shift = static_cast<scalar_t>(a);
    at::parallel_for(0, n, int64_t(1) << 16, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const uint32_t u = (static_cast<uint32_t>(i) + offset) * 2654435769u;  // 2^32 / golden ratio
        p[i] = static_cast<scalar_t>(u >> 8 << 8) * scale - shift;
      }
    });
  });
  return out;
}

std::string set_gemm_backend(const std::string& backend) {
  for (int i = 0; i < kBackends; ++i) {
    if (backend == kBackendNames[i]) return kBackendNames[g_gemm_backend.exchange(i)];
  }
  TORCH_CHECK_VALUE(false, "a3ext: unknown GEMM backend '", backend,
                    "'; expected one of 'auto', 'blas', 'onednn', 'mkl', 'blas_batch', 'own'");
}

namespace {
// One line per calibrated shape class: "key engine calibration_ms name:ms name:ms ...".
std::string engine_choices() {
  std::lock_guard<std::mutex> lock(g_mutex);
  std::ostringstream out;
  for (const auto& [key, c] : g_choices) {
    out << key << ' ' << engine_name(c.engine) << ' ' << c.calibration_seconds * 1e3;
    for (const auto& [e, s] : c.seconds) out << ' ' << engine_name(e) << ':' << s * 1e3;
    if (!c.trial_shape.empty()) out << ' ' << c.trial_shape;
    out << '\n';
  }
  return out.str();
}

// Sets the choice of a key (a calibration loaded from disk); engine "" forgets it.
void set_engine_choice(const std::string& key, const std::string& engine) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (engine.empty()) {
    g_choices.erase(key);
    return;
  }
  for (Engine e : {Engine::Blas, Engine::OneDnn, Engine::Mkl, Engine::BlasBatch, Engine::Own}) {
    if (engine == engine_name(e)) {
      g_choices[key] = Choice{e, {}, 0.0, /*stored=*/true};
      return;
    }
  }
  TORCH_CHECK_VALUE(false, "a3ext: unknown GEMM engine '", engine, "'");
}

void clear_engine_choices() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_choices.clear();
}

// The engines this torch provides, for tests and benchmarks.
std::string available_engines() {
  std::string s = "blas";
  if (OneDnnLinear::get().available()) s += ",onednn";
  if (mkl_api().has_packed_sgemm() || mkl_api().has_syrk<float>()) s += ",mkl";
  s += ",blas_batch";
  if (own_engine_available()) s += ",own";
  return s;
}
}  // namespace

TORCH_LIBRARY_FRAGMENT(a3ext, m) {
  m.def("_gemm_engine_choices() -> str", &engine_choices);
  m.def("_set_gemm_engine_choice(str key, str engine) -> ()", &set_engine_choice);
  m.def("_clear_gemm_engine_choices() -> ()", &clear_engine_choices);
  m.def("_gemm_engines() -> str", &available_engines);
  // the trials' cost of one minor page fault (seconds_of), and seconds_of itself on
  // touching `mb` fresh megabytes, mapped here so that they are fresh whatever the
  // allocator's state: [raw seconds, seconds_of's, minor faults] (for the tests)
  m.def("_page_fault_seconds() -> float", [] { return fault_seconds(); });
  m.def("_seconds_touching_fresh_memory(int mb) -> float[]", [](int64_t mb) {
    TORCH_CHECK(mb > 0 && mb <= 4096, "_seconds_touching_fresh_memory: mb must be in [1, 4096], but got ", mb);
    double raw = 0, faults = 0, counted = 0;
#ifdef __linux__
    const size_t bytes = static_cast<size_t>(mb) << 20;
    void* p = map_fresh(bytes);
    TORCH_CHECK(p != nullptr, "a3ext: could not map ", mb, " MB");
    fault_seconds();  // measured first (its own faults are not this run's)
    const int64_t f0 = minor_faults();
    counted = seconds_of([&] {
      const double t0 = now();
      touch_pages(p, bytes);
      raw = now() - t0;
    });
    faults = static_cast<double>(minor_faults() - f0);
    munmap(p, bytes);
#endif
    return std::vector<double>{raw, counted, faults};
  });
}

}  // namespace a3ext::cpu
