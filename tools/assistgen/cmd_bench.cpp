// assistgen bench: the CPU backend against the memory-bandwidth bound.
// Prints one table per model and weight precision: decode tokens/s, the
// roofline share (weight bytes per token / read bandwidth, over the measured
// step time), c(K) = time(forward of K+1 tokens) / time(forward of 1) for
// K = 1..16, 24, 32, the same ratio c(N) for tree verification of N = 8, 16,
// 32, 64 nodes (one tree request), prefill tokens/s on our kernels and on oneDNN (bf16, int8),
// and assisted decoding with draft == target
// (and with a given draft) against (K+1) / (K c_draft + c(K)), with the loop
// overhead (the share of a step spent outside the two models). With
// --quality FILE it reports, instead, the error of bf16, int8 and int4 weights (and of GGUF files)
// against f32 over a text: mean KL(p_f32 || p) and top-1 agreement.
// Times are medians of --reps runs; every ratio comes from one run.
#include <immintrin.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "assistgen/autoregressive.hpp"
#include "assistgen/batch_engine.hpp"
#include "assistgen/cpu/transformer.hpp"
#include "assistgen/speculative_decoder.hpp"
#include "assistgen/tokenizer.hpp"
#include "commands.hpp"

namespace assistgen::cli {

namespace {

// The clock of every figure: wall time (steady_clock), or with --clock cpu
// the CPU time of the process, which on a shared, oversubscribed machine
// leaves out the time the scheduler gave to other processes (single-threaded
// runs only: with threads, idle spinning would count).
bool g_cpu_clock = false;

double now() {
  if (g_cpu_clock) {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// When a generation's first tokens came out, and how many came out before the
// models ran again: the steady state of decoding starts after them (for an
// assisted run, after the round that also prefilled both caches).
struct FirstTokens {
  double at = -1;
  std::size_t count = 0;
  bool forward_since = false;
  void reset() { *this = {}; }
  bool on_token() {
    if (at < 0) {
      at = now();
      count = 1;
    } else if (!forward_since) {
      ++count;
    }
    return true;
  }
};

// A model that adds the time spent in its forward calls to `*seconds`: the
// loop overhead is what remains of a generation outside the two models.
struct Timed {
  using Cache = cpu::Transformer::Cache;
  const cpu::Transformer* model;
  double* seconds;
  FirstTokens* first;
  std::size_t vocab_size() const { return model->vocab_size(); }
  Cache make_cache(std::size_t capacity) const { return model->make_cache(capacity); }
  Logits forward(std::span<const Token> tokens, Cache& cache) const {
    if (first->at >= 0) first->forward_since = true;
    const double t0 = now();
    Logits out = model->forward(tokens, cache);
    *seconds += now() - t0;
    return out;
  }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

const char* dtype_label(DType t) {
  return t == DType::i4 ? "int4" : t == DType::i8 ? "int8" : t == DType::bf16 ? "bf16" : "f32";
}

// The read-bandwidth probes. The roofline must be the fastest the machine
// reads memory, or a kernel that streams better than the probe shows more
// than 100%: so it is the best of several ways of reading the same 1 GiB,
// each measured alternately with the steps it is compared with.
enum class Probe {
  plain,       // 64-byte loads (AVX-512 when the CPU has it, else 8-byte), one range per thread
  prefetch,    // the same with a software prefetch 4 KiB ahead (the kernels' tiles prefetch)
  nontemporal, // non-temporal 64-byte loads (VMOVNTDQA)
  chunks,      // the kernels' access pattern: chunks of 256 KiB handed out dynamically, prefetched
  twice,       // plain loads on twice the threads
};
constexpr Probe kProbes[] = {Probe::plain, Probe::prefetch, Probe::nontemporal, Probe::chunks,
                             Probe::twice};
const char* probe_name(Probe p) {
  switch (p) {
    case Probe::plain:
      return "64-byte loads";
    case Probe::prefetch:
      return "prefetched";
    case Probe::nontemporal:
      return "non-temporal";
    case Probe::chunks:
      return "dynamic chunks";
    case Probe::twice:
      return "2x threads";
  }
  return "?";
}

template <Probe kProbe>
__attribute__((target("avx512f"))) std::uint64_t sum_avx512(const std::uint64_t* p, std::size_t b,
                                                            std::size_t e) {
  __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
  std::size_t i = b;
  for (; i + 32 <= e; i += 32) {
    if constexpr (kProbe == Probe::prefetch || kProbe == Probe::chunks) {
      const char* ahead = reinterpret_cast<const char*>(p + i) + 4096;
      _mm_prefetch(ahead, _MM_HINT_T0);
      _mm_prefetch(ahead + 64, _MM_HINT_T0);
      _mm_prefetch(ahead + 128, _MM_HINT_T0);
      _mm_prefetch(ahead + 192, _MM_HINT_T0);
    }
    __m512i v[4];
    for (int j = 0; j < 4; ++j) {
      if constexpr (kProbe == Probe::nontemporal)
        v[j] = _mm512_stream_load_si512(const_cast<std::uint64_t*>(p + i + 8 * j));
      else
        v[j] = _mm512_loadu_si512(p + i + 8 * j);
    }
    s0 = _mm512_add_epi64(s0, v[0]);
    s1 = _mm512_add_epi64(s1, v[1]);
    s2 = _mm512_add_epi64(s2, v[2]);
    s3 = _mm512_add_epi64(s3, v[3]);
  }
  alignas(64) std::uint64_t lanes[8];
  _mm512_store_si512(lanes, _mm512_add_epi64(_mm512_add_epi64(s0, s1), _mm512_add_epi64(s2, s3)));
  std::uint64_t s = 0;
  for (std::uint64_t v : lanes) s += v;
  for (; i < e; ++i) s += p[i];
  return s;
}

std::uint64_t sum_plain(const std::uint64_t* p, std::size_t b, std::size_t e) {
  std::uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  std::size_t i = b;
  for (; i + 4 <= e; i += 4) s0 += p[i], s1 += p[i + 1], s2 += p[i + 2], s3 += p[i + 3];
  for (; i < e; ++i) s0 += p[i];
  return s0 + s1 + s2 + s3;
}

std::uint64_t sum_range(Probe probe, const std::uint64_t* p, std::size_t b, std::size_t e) {
  if (!__builtin_cpu_supports("avx512f")) return sum_plain(p, b, e);
  switch (probe) {
    case Probe::prefetch:
      return sum_avx512<Probe::prefetch>(p, b, e);
    case Probe::nontemporal:
      return sum_avx512<Probe::nontemporal>(p, b, e);
    case Probe::chunks:
      return sum_avx512<Probe::chunks>(p, b, e);
    default:
      return sum_avx512<Probe::plain>(p, b, e);
  }
}

// Read bandwidth over a 1 GiB buffer on `threads` threads, one pass of each
// probe at a time (GB/s), so that it can be measured between the steps it is
// compared with: on a shared machine the bandwidth left to this process
// changes from one second to the next. pass() is the best probe of a round.
class ReadBandwidth {
 public:
  explicit ReadBandwidth(int threads)
      : threads_(threads),
        buf_(static_cast<std::uint64_t*>(std::aligned_alloc(kHuge, kWords * sizeof(std::uint64_t)))),
        sums_(2 * threads) {
    if (!buf_) throw std::bad_alloc();
    // Transparent huge pages, as the backend asks for its weights.
    madvise(buf_.get(), kWords * sizeof(std::uint64_t), MADV_HUGEPAGE);
    std::vector<std::thread> ts;
    for (int t = 0; t < threads_; ++t)
      ts.emplace_back([&, t] {
        for (std::size_t i = begin(t, threads_); i < begin(t + 1, threads_); ++i) buf_[i] = i;
      });
    for (auto& t : ts) t.join();
  }

  double probe(Probe probe) {
    const int n = probe == Probe::twice ? 2 * threads_ : threads_;
    std::atomic<std::size_t> next{0};
    constexpr std::size_t kChunk = (std::size_t{256} << 10) / sizeof(std::uint64_t);
    auto part = [&](int t) {
      if (probe == Probe::chunks) {
        std::uint64_t s = 0;
        for (std::size_t c; (c = next.fetch_add(1, std::memory_order_relaxed)) * kChunk < kWords;)
          s += sum_range(probe, buf_.get(), c * kChunk, std::min(kWords, (c + 1) * kChunk));
        sums_[t] = s;
      } else {
        sums_[t] = sum_range(probe, buf_.get(), begin(t, n), begin(t + 1, n));
      }
    };
    const double t0 = now();
    if (n == 1) {
      part(0);
    } else {
      std::vector<std::thread> ts;
      for (int t = 0; t < n; ++t) ts.emplace_back(part, t);
      for (auto& t : ts) t.join();
    }
    const double gbs = static_cast<double>(kWords * sizeof(std::uint64_t)) / (now() - t0) / 1e9;
    volatile std::uint64_t sink = 0;
    for (int t = 0; t < n; ++t) sink = sink + sums_[t];
    return gbs;
  }

  double pass() {
    double best = 0;
    for (Probe p : kProbes) {
      const double g = probe(p);
      best = std::max(best, g);
      best_[static_cast<int>(p)] = std::max(best_[static_cast<int>(p)], g);
    }
    return best;
  }

  double median_of(int reps) {
    std::vector<double> gbs;
    for (int r = 0; r < reps; ++r) gbs.push_back(pass());
    return median(gbs);
  }

  /// "name best, ..." over every pass so far, GB/s.
  std::string summary() const {
    std::string out;
    for (Probe p : kProbes) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%s%s %.1f", out.empty() ? "" : ", ", probe_name(p),
                    best_[static_cast<int>(p)]);
      out += buf;
    }
    return out;
  }

 private:
  static constexpr std::size_t kWords = (std::size_t{1} << 30) / sizeof(std::uint64_t);
  static constexpr std::size_t kHuge = std::size_t{2} << 20;
  // Ranges start on a cache line (VMOVNTDQA needs 64-byte alignment).
  static std::size_t begin(int t, int n) {
    return kWords * static_cast<std::size_t>(t) / static_cast<std::size_t>(n) / 8 * 8;
  }
  struct Free {
    void operator()(std::uint64_t* p) const { std::free(p); }
  };
  int threads_;
  std::unique_ptr<std::uint64_t[], Free> buf_;
  std::vector<std::uint64_t> sums_;
  double best_[std::size(kProbes)] = {};
};

struct Options {
  int reps = 5;
  std::size_t context = 64, new_tokens = 32, draft_max = 4, window = 256;
  std::vector<std::size_t> prefill{128, 512, 2048};
  int threads = 0;
  std::vector<std::size_t> batches{1, 2, 4, 8, 16};
  std::string model, assistant, quality, clock = "wall", dtypes = "f32,bf16,i8", prefill_list,
                                         batch_list, quantized, draft_dtype;
  bool tinyllama = false, no_tinyllama = false;
  CLI::Option *o_model, *o_assistant, *o_quality, *o_window, *o_tinyllama, *o_no_tinyllama,
      *o_prefill, *o_dtype, *o_batch, *o_quantized, *o_draft_dtype;
};

std::vector<Token> filler(std::size_t n, std::size_t vocab, std::size_t salt) {
  std::vector<Token> t(n);
  for (std::size_t i = 0; i < n; ++i)
    t[i] = static_cast<Token>((i * 7919 + salt * 104729 + 1) % vocab);
  return t;
}

// Forwards of n tokens after `context` tokens, one timed step at a time (the
// cache for each n is made and warmed up once), so that steps of different
// sizes can be measured alternately and their ratios come from the same
// stretch of time.
class StepTimer {
 public:
  StepTimer(const cpu::Transformer& m, std::size_t context) : m_(m), context_(context) {}

  double once(std::size_t n) {
    auto it = steps_.find(n);
    if (it == steps_.end()) {
      Step s{m_.make_cache(context_ + n), filler(n, m_.vocab_size(), 2)};
      if (context_) m_.forward(filler(context_, m_.vocab_size(), 1), s.cache, out_);
      m_.forward(s.block, s.cache, out_);  // warm-up
      it = steps_.emplace(n, std::move(s)).first;
    }
    Step& s = it->second;
    s.cache.truncate(context_);
    const double t0 = now();
    m_.forward(s.block, s.cache, out_);
    return now() - t0;
  }

  // A tree verification: the last token and `nodes` draft nodes under it
  // (a 4-ary tree, breadth first), one tree request (backend.hpp).
  double once_tree(std::size_t nodes) {
    auto it = trees_.find(nodes);
    if (it == trees_.end()) {
      Tree t{m_.make_cache(context_ + nodes + 1), filler(nodes + 1, m_.vocab_size(), 4), {}};
      t.parent.resize(nodes + 1);
      for (std::size_t i = 0; i <= nodes; ++i)
        t.parent[i] = i == 0 ? -1 : static_cast<std::int32_t>((i - 1) / 4);
      if (context_) m_.forward(filler(context_, m_.vocab_size(), 1), t.cache, out_);
      it = trees_.emplace(nodes, std::move(t)).first;
      tree_forward(it->second);  // warm-up
    }
    Tree& t = it->second;
    t.cache.truncate(context_);
    const double t0 = now();
    tree_forward(t);
    return now() - t0;
  }

  double median_of(std::size_t n, int reps) {
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) t.push_back(once(n));
    return median(t);
  }

 private:
  struct Step {
    cpu::Transformer::Cache cache;
    std::vector<Token> block;
  };
  struct Tree {
    cpu::Transformer::Cache cache;
    std::vector<Token> block;
    std::vector<std::int32_t> parent;
  };
  void tree_forward(Tree& t) {
    const ForwardRequest r{t.block, t.parent};
    cpu::Transformer::Cache* c = &t.cache;
    m_.forward(std::span<const ForwardRequest>(&r, 1),
               std::span<cpu::Transformer::Cache* const>(&c, 1), out_);
  }
  const cpu::Transformer& m_;
  std::size_t context_;
  std::map<std::size_t, Step> steps_;
  std::map<std::size_t, Tree> trees_;
  Logits out_;
};

// A prompt prefill of n tokens as the decoders feed it (one call, no
// logits: detail::prefill_prompt) through a given PrefillPath, into a cache
// made once; the oneDNN primitives of each length are made by a warm-up call.
class PrefillTimer {
 public:
  PrefillTimer(const cpu::Transformer& m, std::size_t n)
      : m_(m), cache_(m.make_cache(n)), block_(filler(n, m.vocab_size(), 2)) {}

  double once(cpu::PrefillPath path) {
    cpu::set_prefill_path(path);
    cache_.truncate(0);
    const ForwardRequest request{block_, {}, 0};
    cpu::Transformer::Cache* const caches[1] = {&cache_};
    const double t0 = now();
    m_.forward({&request, 1}, caches, out_);
    const double t = now() - t0;
    cpu::set_prefill_path(cpu::PrefillPath::automatic);
    return t;
  }

 private:
  const cpu::Transformer& m_;
  cpu::Transformer::Cache cache_;
  std::vector<Token> block_;
  Logits out_;
};

struct Assisted {
  double plain_s = 0, assisted_s = 0, loop_share = 0, acceptance = 0;
  // Time per token after the first emitted tokens (the prompt's prefill and,
  // for the assisted run, its first round left out): the steady state that
  // (K+1) / (K c_draft + c(K)) predicts.
  double plain_steady_s = 0, assisted_steady_s = 0;
};

// Greedy decoding of `opt.new_tokens` tokens, plain and assisted (draft,
// constant K), medians over reps; the loop share is that of the assisted runs.
Assisted time_assisted(const cpu::Transformer& draft, const cpu::Transformer& target,
                       const std::vector<Token>& prompt, const Options& opt) {
  GenerationConfig cfg;
  cfg.max_new_tokens = opt.new_tokens;
  cfg.num_assistant_tokens = opt.draft_max;
  double t_plain = 0, t_draft = 0, t_target = 0;
  FirstTokens first;
  const Timed plain_model{&target, &t_plain, &first}, draft_model{&draft, &t_draft, &first},
      target_model{&target, &t_target, &first};
  AutoregressiveDecoder plain(plain_model, cfg);
  SpeculativeDecoder spec(draft_model, target_model, cfg);
  plain.generate(prompt);  // warm-up
  spec.generate(prompt);
  const TokenCallback on_token = [&](Token) { return first.on_token(); };
  // Seconds per token after the first emitted ones (NaN when there are none).
  auto steady = [&](std::size_t emitted, double end) {
    return emitted > first.count ? (end - first.at) / static_cast<double>(emitted - first.count)
                                 : std::numeric_limits<double>::quiet_NaN();
  };
  std::vector<double> tp, ta, sp, sa, loop, acc;
  const int reps = std::max(1, opt.reps / 2);
  for (int r = 0; r < reps; ++r) {
    first.reset();
    double t0 = now();
    const auto plain_res = plain.generate(prompt, on_token);
    double end = now();
    tp.push_back(end - t0);
    sp.push_back(steady(plain_res.tokens.size(), end));
    t_draft = t_target = 0;
    first.reset();
    t0 = now();
    const auto res = spec.generate(prompt, on_token);
    end = now();
    const double total = end - t0;
    ta.push_back(total);
    sa.push_back(steady(res.tokens.size(), end));
    loop.push_back(std::max(0.0, total - t_draft - t_target) / total);
    acc.push_back(res.stats.acceptance_rate());
  }
  return {median(tp), median(ta), median(loop), median(acc), median(sp), median(sa)};
}

// Rounds of B sequences: a target forward_batch of B requests of n tokens,
// each after `context` cached tokens, one timed call at a time (as StepTimer).
class BatchStepTimer {
 public:
  BatchStepTimer(const cpu::Transformer& m, std::size_t context, std::size_t batch)
      : m_(m), context_(context), batch_(batch) {}

  double once(std::size_t n) {
    auto it = steps_.find(n);
    if (it == steps_.end()) {
      Step s;
      for (std::size_t b = 0; b < batch_; ++b) {
        s.caches.push_back(m_.make_cache(context_ + n));
        s.blocks.push_back(filler(n, m_.vocab_size(), 10 + b));
        if (context_) m_.forward(filler(context_, m_.vocab_size(), 100 + b), s.caches.back(), out_);
      }
      for (std::size_t b = 0; b < batch_; ++b) s.requests.push_back({s.blocks[b], {}, kAllRows});
      it = steps_.emplace(n, std::move(s)).first;
      for (auto& c : it->second.caches) it->second.pointers.push_back(&c);
      run(it->second);  // warm-up
    }
    return run(it->second);
  }

 private:
  struct Step {
    std::vector<cpu::Transformer::Cache> caches;
    std::vector<cpu::Transformer::Cache*> pointers;
    std::vector<std::vector<Token>> blocks;
    std::vector<ForwardRequest> requests;
  };
  double run(Step& s) {
    for (auto& c : s.caches) c.truncate(context_);
    const double t0 = now();
    m_.forward(std::span<const ForwardRequest>(s.requests),
               std::span<cpu::Transformer::Cache* const>(s.pointers), out_, {});
    return now() - t0;
  }
  const cpu::Transformer& m_;
  std::size_t context_, batch_;
  std::map<std::size_t, Step> steps_;
  Logits out_;
};

struct BatchRun {
  double tokens_per_s = 0, overhead_share = 0, mean_batch = 0;
};

// B sequences (distinct prompts, greedy, opt.new_tokens each) through a
// BatchEngine with max_batch B. Figures after the first round (the prompts'
// prefill): aggregate tokens/s and the share of step time outside the models.
template <class Source, class MakeSource>
BatchRun run_engine(const cpu::Transformer& m, std::size_t batch, const Options& opt,
                    MakeSource&& make_source) {
  GenerationConfig cfg;
  cfg.max_new_tokens = opt.new_tokens;
  cfg.num_assistant_tokens = opt.draft_max;
  BatchEngine<cpu::Transformer, Source> engine(m, {.max_batch = batch});
  for (std::size_t b = 0; b < batch; ++b)
    engine.submit(filler(12, m.vocab_size(), 20 + b), cfg, make_source());
  engine.step();
  const BatchStats s0 = engine.stats();
  const double t0 = now();
  while (engine.step()) {
  }
  const double t = now() - t0;
  const BatchStats s1 = engine.stats();
  BatchRun r;
  r.tokens_per_s = static_cast<double>(s1.new_tokens - s0.new_tokens) / t;
  const double step = s1.step_seconds - s0.step_seconds;
  r.overhead_share = step > 0 ? (s1.overhead_seconds() - s0.overhead_seconds()) / step : 0.0;
  r.mean_batch = s1.mean_batch();
  return r;
}

// The batch table: aggregate decode tokens/s at each batch size, plain and
// assisted (draft == target, constant K: every draft is accepted), c(K) of
// the batched verification, and the share of the assisted rounds spent
// outside the models. Medians of max(1, reps / 2) engine runs.
void bench_batches(const cpu::Transformer& m, const Options& opt) {
  const std::size_t K = opt.draft_max;
  const int reps = std::max(1, opt.reps / 2);
  using Draft = DraftModelCandidates<cpu::Transformer>;
  std::printf(
      "\n| batch | plain tokens/s | x plain batch 1 | assisted (draft == target, K=%zu) tokens/s | "
      "x plain "
      "batch 1 | c(K) K=1,2,4,8 | assisted: outside the models |\n|---|---|---|---|---|---|---|\n",
      K);
  double plain1 = 0;
  for (std::size_t b : opt.batches) {
    if (b == 0) continue;
    std::vector<double> plain, assisted, overhead;
    for (int r = 0; r < reps; ++r) {
      plain.push_back(
          run_engine<NoCandidates>(m, b, opt, [] { return NoCandidates{}; }).tokens_per_s);
      const BatchRun a = run_engine<Draft>(m, b, opt, [&] { return Draft(m, m.vocab_size()); });
      assisted.push_back(a.tokens_per_s);
      overhead.push_back(a.overhead_share);
    }
    const double p = median(plain), a = median(assisted);
    if (plain1 == 0) plain1 = p;
    BatchStepTimer steps(m, opt.context, b);
    std::string ck;
    for (std::size_t k : {1, 2, 4, 8}) {
      std::vector<double> ratios;
      for (int r = 0; r < opt.reps; ++r) {
        const double one = steps.once(1);
        ratios.push_back(steps.once(k + 1) / one);
      }
      char buf[32];
      std::snprintf(buf, sizeof buf, "%s%zu:%.2f", k > 1 ? " " : "", k, median(ratios));
      ck += buf;
    }
    std::printf("| %zu | %.2f | %.2f | %.2f | %.2f | %s | %.2f%% |\n", b, p, p / plain1, a,
                a / plain1, ck.c_str(), 100.0 * median(overhead));
    std::fflush(stdout);
  }
}

void bench_model(const std::string& name, const cpu::Transformer& m, const cpu::Transformer* draft,
                 const std::vector<Token>& prompt, ReadBandwidth& bw, const Options& opt) {
  const double bytes = static_cast<double>(m.bytes_per_token());
  StepTimer steps(m, opt.context);
  // Decode steps alternating with read-bandwidth passes (each pass evicts the
  // caches, so an untimed step brings back what a model small enough for
  // them would keep there while decoding).
  std::vector<double> t1s, gbs;
  for (int r = 0; r < opt.reps; ++r) {
    gbs.push_back(bw.pass());
    steps.once(1);
    t1s.push_back(steps.once(1));
  }
  const double t1 = median(t1s), read_gbs = median(gbs);
  std::printf("\n### %s, %s weights\n\n", name.c_str(), dtype_label(m.dtype()));
  std::printf("| figure | value |\n|---|---|\n");
  std::printf("| weight bytes per token | %.1f MB |\n", bytes / 1e6);
  std::printf("| decode | %.2f tokens/s (%.2f ms/token) |\n", 1.0 / t1, t1 * 1e3);
  std::printf("| weight stream | %.1f GB/s |\n", bytes / t1 / 1e9);
  std::printf("| read bandwidth, best probe of each round between the decode steps | %.1f GB/s |\n",
              read_gbs);
  std::printf("| roofline (bytes/token / read bandwidth, over step time) | %.0f%% |\n",
              100.0 * bytes / (read_gbs * 1e9) / t1);
  // c(K): the median ratio of a forward of K + 1 tokens to the one-token
  // forward just before it, so that a change in the machine's load spoils
  // one pair rather than the whole figure.
  std::vector<double> c(33, 1.0);
  std::string ck;
  for (std::size_t k : {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 24, 32}) {
    std::vector<double> ratios;
    for (int r = 0; r < opt.reps; ++r) {
      const double one = steps.once(1);
      ratios.push_back(steps.once(k + 1) / one);
    }
    c[k] = median(ratios);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%s%zu:%.2f", k > 1 ? " " : "", k, c[k]);
    ck += buf;
  }
  std::printf("| c(K), K=1..16, 24, 32 | %s |\n", ck.c_str());
  // Tree verification: the forward of the last token and N tree nodes (one
  // tree request, ancestor masks) over the one-token forward, as c(K).
  std::string cn;
  for (std::size_t nodes : {8, 16, 32, 64}) {
    std::vector<double> ratios;
    for (int r = 0; r < opt.reps; ++r) {
      const double one = steps.once(1);
      ratios.push_back(steps.once_tree(nodes) / one);
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "%s%zu:%.2f", nodes > 8 ? " " : "", nodes, median(ratios));
    cn += buf;
  }
  std::printf("| tree verification c(N), N nodes = 8, 16, 32, 64 (+ the last token) | %s |\n",
              cn.c_str());
  // Prefill on our kernels and on oneDNN (bf16 and i8 weights), alternately,
  // each after a warm-up call.
  const bool onednn = m.dtype() == DType::bf16 || m.dtype() == DType::i8;
  for (std::size_t p : opt.prefill) {
    if (p == 0) continue;
    PrefillTimer timer(m, p);
    std::vector<double> ours, theirs;
    timer.once(cpu::PrefillPath::kernels);
    if (onednn) timer.once(cpu::PrefillPath::onednn);
    for (int r = 0; r < std::max(1, opt.reps / 3); ++r) {
      ours.push_back(timer.once(cpu::PrefillPath::kernels));
      if (onednn) theirs.push_back(timer.once(cpu::PrefillPath::onednn));
    }
    const double tk = static_cast<double>(p) / median(ours);
    if (onednn) {
      const double to = static_cast<double>(p) / median(theirs);
      std::printf("| prefill %zu | kernels %.1f tokens/s, oneDNN %.1f tokens/s (oneDNN/kernels %.2f) |\n", p,
                  tk, to, to / tk);
    } else {
      std::printf("| prefill %zu | kernels %.1f tokens/s (no oneDNN path for %s) |\n", p, tk,
                  dtype_label(m.dtype()));
    }
  }
  const std::size_t K = opt.draft_max;
  const Assisted self = time_assisted(m, m, prompt, opt);
  const double predicted =
      static_cast<double>(K + 1) / (static_cast<double>(K) + c[std::min<std::size_t>(K, 16)]);
  std::printf(
      "| assisted, draft == target, K=%zu | speedup %.3f after the first round, predicted "
      "(K+1)/(K+c(K)) = %.3f, ratio %.3f; %.3f with the prompt's prefill; loop overhead %.2f%% "
      "|\n",
      K, self.plain_steady_s / self.assisted_steady_s, predicted,
      (self.plain_steady_s / self.assisted_steady_s) / predicted, self.plain_s / self.assisted_s,
      100.0 * self.loop_share);
  if (draft) {
    const double td = StepTimer(*draft, opt.context).median_of(1, opt.reps);
    const Assisted pair = time_assisted(*draft, m, prompt, opt);
    const double cd = td / t1;
    std::printf(
        "| assisted with the draft, K=%zu | speedup %.3f after the first round, %.3f with the "
        "prompt's prefill; acceptance %.2f; c_draft %.3f; bound if all accepted (K+1)/(K c_draft "
        "+ c(K)) = %.3f; loop overhead %.2f%% |\n",
        K, pair.plain_steady_s / pair.assisted_steady_s, pair.plain_s / pair.assisted_s,
        pair.acceptance, cd,
        static_cast<double>(K + 1) /
            (static_cast<double>(K) * cd + c[std::min<std::size_t>(K, 16)]),
        100.0 * pair.loop_share);
  }
  std::fflush(stdout);
  if (!opt.batches.empty()) bench_batches(m, opt);
}

std::vector<Token> prompt_for(const std::optional<Tokenizer>& tok, std::size_t vocab) {
  if (tok) {
    auto ids =
        tok->encode("In the beginning God created the heaven and the earth. And the earth was");
    if (!ids.empty()) return ids;
  }
  return filler(12, vocab, 3);
}

int run_quality(const Options& opt) {
  if (!given(opt.o_model)) throw UsageError("--quality needs --model (-m)");
  const std::string& dir = opt.model;
  const std::string text_in = read_input_file(opt.quality, "--quality");
  // Text through the model's tokenizer; without a tokenizer.json, FILE holds
  // token ids separated by commas or white space.
  std::vector<Token> ids;
  if (std::filesystem::exists(std::filesystem::path(dir) / "tokenizer.json")) {
    ids = Tokenizer::load(dir).encode(text_in);
  } else {
    std::string text = text_in;
    std::replace_if(
        text.begin(), text.end(),
        [](char c) { return std::isspace(static_cast<unsigned char>(c)); }, ',');
    std::string joined;
    for (const auto& item : split(text)) joined += (joined.empty() ? "" : ",") + item;
    ids = parse_token_list(joined);
  }
  if (ids.size() < 2) throw UsageError("--quality: the text gives fewer than 2 tokens");
  const std::size_t window = opt.window;
  cpu::LoadOptions lo;
  lo.threads = opt.threads;
  lo.dtype = DType::f32;  // the reference (unset would be bf16 for a bf16 checkpoint)
  const cpu::Transformer ref = cpu::Transformer::load(dir, lo);
  std::printf(
      "| weights | tokens | mean KL(p_f32 || p) (nats) | top-1 agreement with f32 "
      "|\n|---|---|---|---|\n");
  auto compare = [&](const cpu::Transformer& m, const std::string& label) {
    if (m.vocab_size() != ref.vocab_size())
      throw UsageError("--quantized: '" + label + "' has a vocabulary of " +
                       std::to_string(m.vocab_size()) + ", -m of " +
                       std::to_string(ref.vocab_size()));
    double kl_sum = 0;
    std::size_t agree = 0, count = 0;
    for (std::size_t b = 0; b + 1 < ids.size(); b += window) {
      const std::span<const Token> w = std::span(ids).subspan(b, std::min(window, ids.size() - b));
      auto c1 = ref.make_cache(w.size()), c2 = m.make_cache(w.size());
      const Logits p = ref.forward(w, c1), q = m.forward(w, c2);
      for (std::size_t r = 0; r < p.rows(); ++r) {
        const auto pr = p.row(r), qr = q.row(r);
        const float pm = *std::max_element(pr.begin(), pr.end()),
                    qm = *std::max_element(qr.begin(), qr.end());
        double zp = 0, zq = 0;
        for (std::size_t v = 0; v < pr.size(); ++v)
          zp += std::exp(double(pr[v]) - pm), zq += std::exp(double(qr[v]) - qm);
        const double lzp = std::log(zp) + pm, lzq = std::log(zq) + qm;
        double kl = 0;
        for (std::size_t v = 0; v < pr.size(); ++v) {
          const double lp = pr[v] - lzp, lq = qr[v] - lzq;
          kl += std::exp(lp) * (lp - lq);
        }
        kl_sum += kl;
        agree += (std::max_element(pr.begin(), pr.end()) - pr.begin()) ==
                 (std::max_element(qr.begin(), qr.end()) - qr.begin());
        ++count;
      }
    }
    std::printf("| %s | %zu | %.3g | %.4f |\n", label.c_str(), count,
                count ? kl_sum / double(count) : 0.0, count ? double(agree) / double(count) : 0.0);
  };
  for (DType dt : {DType::bf16, DType::i8, DType::i4}) {
    lo.dtype = dt;
    compare(cpu::Transformer::load(dir, lo), dtype_label(dt));
  }
  for (const auto& path : split(opt.quantized)) {  // GGUF files of the same weights, as stored
    cpu::LoadOptions own;
    own.threads = opt.threads;
    compare(cpu::Transformer::load(path, own), std::filesystem::path(path).filename().string());
  }
  return 0;
}

int run_bench(Options& opt) {
  require_with(opt.o_window, given(opt.o_quality), "applies only with --quality");
  require_with(opt.o_quantized, given(opt.o_quality), "applies only with --quality");
  require_with(opt.o_draft_dtype, given(opt.o_assistant), "applies only with a draft model (-a)");
  if (given(opt.o_quality))
    for (const CLI::Option* o : {opt.o_assistant, opt.o_tinyllama, opt.o_no_tinyllama,
                                 opt.o_prefill, opt.o_dtype, opt.o_batch})
      require_with(o, false,
                   "does not apply to --quality (it compares bf16, int8 and int4 with f32)");
  if (opt.tinyllama && opt.no_tinyllama)
    throw UsageError("--tinyllama and --no-tinyllama are alternatives");
  if (given(opt.o_prefill)) {
    opt.prefill.clear();
    for (const auto& s : split(opt.prefill_list)) {
      std::size_t v = 0;
      auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (ec != std::errc() || p != s.data() + s.size() || v > (1u << 20))
        throw UsageError("--prefill: '" + s + "' is not a length (expected e.g. 128,512)");
      opt.prefill.push_back(v);
    }
  }
  if (given(opt.o_batch)) {
    opt.batches.clear();
    for (const auto& s : split(opt.batch_list)) {
      std::size_t v = 0;
      auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (ec != std::errc() || p != s.data() + s.size() || v > 4096)
        throw UsageError("--batch: '" + s + "' is not a batch size (expected e.g. 1,2,4,8,16)");
      if (v > 0) opt.batches.push_back(v);
    }
  }
  g_cpu_clock = opt.clock == "cpu";
  if (g_cpu_clock && opt.threads != 1) throw UsageError("--clock cpu needs --threads 1");
  if (given(opt.o_assistant) && !given(opt.o_model)) throw UsageError("--assistant needs --model");
  std::vector<DType> dtypes;
  for (const auto& s : split(opt.dtypes)) dtypes.push_back(parse_dtype(s));
  if (given(opt.o_quality)) {
    if (tensor_parallel())
      throw UsageError("--quality compares several loads of -m on one rank: run it without mpirun");
    return run_quality(opt);
  }
  // The 4 GB random TinyLlama model is made when asked for, or when no -m is given.
  const bool tinyllama = opt.tinyllama || (!given(opt.o_model) && !opt.no_tinyllama);
  if (!given(opt.o_model) && !tinyllama)
    throw UsageError("nothing to measure: give --model DIR, or drop --no-tinyllama");

  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads = opt.threads > 0 ? opt.threads : hw;
  ReadBandwidth bw(threads);
  const double read_gbs = bw.median_of(opt.reps);
  std::printf(
      "## assistgen bench\n\nkernels: %s; clock: %s; read bandwidth (1 GiB, %d threads, best of the probes "
      "per round, median of rounds): %.1f GB/s (best of each probe: %s)\n",
      cpu::kernel_isa(), g_cpu_clock ? "process CPU time" : "wall", threads, read_gbs,
      bw.summary().c_str());
  std::fflush(stdout);

  for (DType dt : dtypes) {
    cpu::LoadOptions lo;
    lo.dtype = dt;
    lo.threads = opt.threads;
    cpu::LoadOptions target_lo = lo;
    target_lo.tensor_parallel =
        target_group();  // under mpirun: split; a draft runs whole on every rank
    if (given(opt.o_model)) {
      std::optional<cpu::Transformer> m;
      with_load_progress(opt.model, [&](const ProgressSink& sink) {
        cpu::LoadOptions o = target_lo;
        o.on_progress = sink;
        m.emplace(cpu::Transformer::load(opt.model, o));
      });
      announce_split(*m);
      std::optional<Tokenizer> tok;
      try {
        tok = Tokenizer::load(opt.model);
      } catch (const Error&) {
      }
      std::optional<cpu::Transformer> d;
      if (given(opt.o_assistant))
        with_load_progress(opt.assistant, [&](const ProgressSink& sink) {
          cpu::LoadOptions o = lo;
          if (given(opt.o_draft_dtype)) o.dtype = parse_dtype(opt.draft_dtype);
          o.on_progress = sink;
          d.emplace(cpu::Transformer::load(opt.assistant, o));
        });
      bench_model(opt.model, *m, d ? &*d : nullptr, prompt_for(tok, m->vocab_size()), bw, opt);
    }
    if (tinyllama) {
      const auto t0 = std::chrono::steady_clock::now();
      const cpu::Transformer m = cpu::Transformer::random(tinyllama_shape(), 1, target_lo);
      announce_split(m);
      std::printf("\n(TinyLlama-shaped random model made in %.1f s)\n",
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      bench_model("TinyLlama-1.1B shape, random weights", m, nullptr, filler(12, m.vocab_size(), 3),
                  bw, opt);
    }
  }
  return 0;
}

}  // namespace

Command add_bench(CLI::App& app) {
  auto o = std::make_shared<Options>();
  CLI::App* sub = app.add_subcommand(
      "bench", "decode, verification and prefill speed against the memory-bandwidth bound");
  sub->footer(
      "Measures the CPU backend against the machine's read bandwidth: for the model of -m and,\n"
      "with --tinyllama or when no -m is given, a TinyLlama-1.1B-shaped model with random\n"
      "weights made in memory (about 4 GB, minutes), at each weight precision: decode tokens/s,\n"
      "% of the roofline, c(K) for K = 1..16, 24 and 32, prefill tokens/s, and assisted greedy decoding\n"
      "with draft == target (and with the draft of -a) including the loop overhead; then the\n"
      "batch table (BatchEngine): aggregate decode tokens/s at batch 1, 2, 4, 8, 16, plain and\n"
      "assisted (draft == target), c(K) of the batched verification, and the share of the\n"
      "rounds spent outside the models.\n"
      "With --quality FILE: the error of bf16, int8 and int4 weights against f32 on the text in\n"
      "FILE (token ids, comma/space-separated, if DIR has no tokenizer.json), and of the model\n"
      "files of --quantized (GGUF files of the same weights, at their stored precision).");
  o->o_model = sub->add_option("-m,--model", o->model, "a model directory (HF format) to measure");
  o->o_assistant = sub->add_option("-a,--assistant", o->assistant,
                                   "a draft for -m: assisted speedup of the pair");
  o->o_dtype = sub->add_option("--dtype", o->dtypes, "weight precisions, comma-separated")
                   ->capture_default_str();
  o->o_draft_dtype =
      sub->add_option("--draft-dtype", o->draft_dtype,
                      "-a only: the draft's weights in every run (default: as each --dtype)")
          ->check(one_of({"f32", "bf16", "int8", "i8", "int4", "i4"}));
  o->o_tinyllama = sub->add_flag("--tinyllama", o->tinyllama,
                                 "also measure the TinyLlama-shaped random model (the default "
                                 "without -m)");
  o->o_no_tinyllama =
      sub->add_flag("--no-tinyllama", o->no_tinyllama, "skip the TinyLlama-shaped random model");
  sub->add_option("--reps", o->reps, "timed repetitions per figure; medians are printed")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  o->o_prefill = sub->add_option("--prefill", o->prefill_list,
                                 "prefill lengths, comma-separated (default 128,512,2048; 0: none)");
  sub->add_option("--context", o->context, "tokens in the cache before decode/verify steps")
      ->check(CLI::Range(std::size_t{0}, std::size_t{1} << 20))
      ->capture_default_str();
  sub->add_option("--new-tokens", o->new_tokens, "tokens generated in the assisted runs")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20))
      ->capture_default_str();
  sub->add_option("--draft-max", o->draft_max, "drafted tokens per round in the assisted runs")
      ->check(CLI::Range(std::size_t{1}, std::size_t{16}))
      ->capture_default_str();
  o->o_batch = sub->add_option("--batch", o->batch_list,
                               "batch sizes of the continuous-batching table, comma-separated "
                               "(default 1,2,4,8,16; 0: none)");
  o->o_quality = sub->add_option("--quality", o->quality,
                                 "instead: bf16, int8 and int4 against f32 on the text in FILE");
  o->o_quantized = sub->add_option("--quantized", o->quantized,
                                   "--quality: also these model files (comma-separated; GGUF "
                                   "files of -m's weights), each at its stored precision");
  o->o_window = sub->add_option("--window", o->window, "--quality: tokens per forward pass")
                    ->check(CLI::Range(std::size_t{2}, std::size_t{1} << 20))
                    ->capture_default_str();
  sub->add_option("--clock", o->clock,
                  "wall, or cpu: process CPU time, for a shared machine (needs --threads 1)")
      ->check(one_of({"wall", "cpu"}))
      ->capture_default_str();
  sub->add_option("-t,--threads", o->threads, "threads (0: all cores)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  return {sub, [o] { return run_bench(*o); }};
}

}  // namespace assistgen::cli
