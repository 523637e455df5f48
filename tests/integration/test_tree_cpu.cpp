// Tree drafts on the CPU backend with the checkpoints of tests/data/models:
// greedy TreeDecoder output is token for token the target's own greedy
// output for every family (Llama, GPT-2 with learned positions, Mistral with
// a sliding window shorter than the output, Qwen2 with biases, tied bf16
// embeddings), every weight dtype (f32, bf16, int8), dynamic and static
// trees, close and unrelated drafts; the same through BatchEngine with
// several sequences per round (tree requests of different shapes in one
// target call) and through the text-level AnyModel; and sampled output's
// first two tokens follow the processed target's exact law (chi-square);
// and a greedy proposal's nodes have the children a plain forward of their
// paths gives (the draft's cache protocol).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "assistgen/any_model.hpp"
#include "assistgen/autoregressive.hpp"
#include "assistgen/batch_engine.hpp"
#include "assistgen/candidates/draft_tree.hpp"
#include "assistgen/cpu/transformer.hpp"
#include "assistgen/tree_decoder.hpp"
#include "assistgen/types.hpp"
#include "unit/toy_models.hpp"
#include "unit/toy_tree_model.hpp"

using namespace assistgen;
using cpu::Transformer;

namespace {

const std::filesystem::path kModels = std::filesystem::path(ASSISTGEN_TEST_DATA_DIR) / "models";
const std::vector<Token> kPrompt{1, 17, 200, 45, 3, 99};

std::vector<GenerationConfig> tree_configs(std::size_t max_new) {
  std::vector<GenerationConfig> out;
  GenerationConfig dyn{.max_new_tokens = max_new, .num_assistant_tokens = 5};
  dyn.tree_nodes = 16;
  dyn.tree_width = 4;
  out.push_back(dyn);
  GenerationConfig deep = dyn;
  deep.num_assistant_tokens = 8;
  deep.tree_nodes = 32;
  deep.tree_width = 2;
  out.push_back(deep);
  GenerationConfig fixed{.max_new_tokens = max_new, .num_assistant_tokens = 4};
  fixed.tree_shape = {3, 2, 1, 1};
  out.push_back(fixed);
  return out;
}

}  // namespace

TEST_CASE("greedy tree decoding equals the target alone: every family and dtype",
          "[tree][cpu][greedy]") {
  const std::string target_dir =
      GENERATE("llama-gqa", "gpt2-target", "mistral-window", "qwen2-bias", "llama-tied-bf16");
  const DType dtype = GENERATE(DType::f32, DType::bf16, DType::i8);
  INFO(target_dir << " " << dtype_name(dtype));
  const Transformer target = Transformer::load(kModels / target_dir, {.dtype = dtype});
  // A close draft (the family's small or noisy sibling, or the target in
  // int8) and an unrelated one.
  const std::string close_dir = target_dir == "llama-gqa"     ? "llama-gqa-noisy"
                                : target_dir == "gpt2-target" ? "gpt2-draft"
                                                              : target_dir;
  const Transformer close = Transformer::load(kModels / close_dir, {.dtype = DType::i8});
  const Transformer unrelated = Transformer::load(kModels / "llama-draft");
  constexpr std::size_t kNew = 40;
  const auto want =
      generate_autoregressive(target, kPrompt, GenerationConfig{.max_new_tokens = kNew}).tokens;
  REQUIRE(want.size() == kNew);
  std::size_t accepted_close = 0;
  for (const Transformer* draft : {&close, &unrelated}) {
    for (const GenerationConfig& cfg : tree_configs(kNew)) {
      INFO((draft == &close ? "close" : "unrelated")
           << " draft, nodes " << cfg.tree_nodes << " width " << cfg.tree_width << " shape levels "
           << cfg.tree_shape.size());
      TreeDecoder dec(*draft, target, cfg);
      const auto r = dec.generate(kPrompt);
      REQUIRE(r.tokens == want);
      if (draft == &close) accepted_close += r.stats.accepted;
    }
  }
  CHECK(accepted_close > 10);  // the close drafts' paths were accepted (keep() ran)
}

TEST_CASE("tree decoding through BatchEngine: several sequences per round equal the target alone",
          "[tree][cpu][batch]") {
  const std::string target_dir = GENERATE("llama-gqa", "gpt2-target", "mistral-window");
  const DType dtype = GENERATE(DType::f32, DType::bf16, DType::i8);
  INFO(target_dir << " " << dtype_name(dtype));
  const Transformer target = Transformer::load(kModels / target_dir, {.dtype = dtype});
  const Transformer draft = Transformer::load(kModels / target_dir, {.dtype = DType::i8});
  const std::vector<std::vector<Token>> prompts{
      kPrompt, {5, 6}, {250, 1, 1, 1, 9, 30, 31, 32, 7}, {42}};
  using Source = DraftTreeCandidates<Transformer>;
  BatchEngine<Transformer, Source> engine(target, {.max_batch = 3});
  std::vector<GenerationConfig> cfgs;
  const auto shapes = tree_configs(0);
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    GenerationConfig cfg = shapes[i % shapes.size()];
    cfg.max_new_tokens = 24 + 4 * i;
    cfgs.push_back(cfg);
    engine.submit(prompts[i], cfg, Source(draft, target.vocab_size(), cfg));
  }
  engine.run();
  const auto done = engine.take_finished();
  REQUIRE(done.size() == prompts.size());
  CHECK(engine.stats().max_batch_seen == 3);
  for (const auto& f : done) {
    INFO("sequence " << f.id);
    REQUIRE(!f.error);
    const auto want =
        generate_autoregressive(target, prompts[f.id],
                                GenerationConfig{.max_new_tokens = cfgs[f.id].max_new_tokens})
            .tokens;
    CHECK(f.result.tokens == want);
  }
}

TEST_CASE("tree decoding through AnyModel equals the target alone", "[tree][cpu][any_model]") {
  const AnyModel target(Transformer::load(kModels / "qwen2-bias"));
  const AnyModel draft(Transformer::load(kModels / "qwen2-bias", {.dtype = DType::i8}));
  GenerationConfig cfg = tree_configs(30)[0];
  TreeDecoder dec(draft, target, cfg);
  const auto want =
      generate_autoregressive(target, kPrompt, GenerationConfig{.max_new_tokens = 30}).tokens;
  CHECK(dec.generate(kPrompt).tokens == want);
  // A second call reuses the caches.
  CHECK(dec.generate(kPrompt).tokens == want);
}

TEST_CASE("sampled tree decoding on a checkpoint: the first two tokens follow the processed target",
          "[tree][cpu][statistical]") {
  const Transformer target = Transformer::load(kModels / "llama-gqa");
  const Transformer draft = Transformer::load(kModels / "llama-gqa-noisy");
  GenerationConfig cfg{.max_new_tokens = 2,
                       .num_assistant_tokens = 3,
                       .do_sample = true,
                       .temperature = 0.7f,
                       .top_k = 4};
  cfg.tree_nodes = 6;
  cfg.tree_width = 2;
  TreeDecoder dec(draft, target, cfg);
  // The exact law: top-4 of logits / 0.7 at each of the two steps, in double.
  auto law = [&](const std::vector<Token>& h) {
    auto c = target.make_cache(h.size());
    const Logits l = target.forward(h, c);
    const auto row = l.row(l.rows() - 1);
    std::vector<double> x(row.begin(), row.end());
    std::vector<double> sorted = x;
    std::sort(sorted.begin(), sorted.end(), std::greater<>());
    std::vector<double> p(x.size(), 0.0);
    double z = 0;
    for (std::size_t i = 0; i < x.size(); ++i)
      if (x[i] >= sorted[3]) z += p[i] = std::exp((x[i] - sorted[0]) / 0.7);
    for (double& e : p) e /= z;
    return p;
  };
  const auto p0 = law(kPrompt);
  std::vector<std::size_t> firsts;
  for (std::size_t a = 0; a < p0.size(); ++a)
    if (p0[a] > 0) firsts.push_back(a);
  REQUIRE(firsts.size() == 4);
  const std::size_t V = target.vocab_size();
  std::vector<double> expected(V * V, 0.0);
  for (std::size_t a : firsts) {
    std::vector<Token> h = kPrompt;
    h.push_back(static_cast<Token>(a));
    const auto p1 = law(h);
    for (std::size_t b = 0; b < V; ++b) expected[a * V + b] = p0[a] * p1[b];
  }
  constexpr int kRuns = 20000;
  std::vector<std::size_t> counts(V * V, 0);
  std::size_t accepted = 0;
  for (int i = 0; i < kRuns; ++i) {
    dec.set_seed(static_cast<std::uint64_t>(i));
    const auto r = dec.generate(kPrompt);
    REQUIRE(r.tokens.size() == 2);
    accepted += r.stats.accepted;
    ++counts[static_cast<std::size_t>(r.tokens[0]) * V + static_cast<std::size_t>(r.tokens[1])];
  }
  const auto cs = toy::chi_square(counts, expected);
  INFO("chi2 " << cs.statistic << " df " << cs.df << ", candidates accepted " << accepted);
  REQUIRE(cs.impossible == 0);
  REQUIRE(cs.statistic < toy::chi2_critical_001(cs.df));
  CHECK(accepted > kRuns / 2);
}

namespace {

// The CPU backend without tree continuation (backend.hpp: ContinuesTrees):
// a draft tree over it re-feeds the frontier's ancestors at each level.
struct RefeedingDraft {
  using Cache = Transformer::Cache;
  static constexpr bool kTreeRequests = true;
  const Transformer* m;
  std::size_t vocab_size() const { return m->vocab_size(); }
  Cache make_cache(std::size_t capacity) const { return m->make_cache(capacity); }
  Logits forward(std::span<const Token> tokens, Cache& cache) const {
    return m->forward(tokens, cache);
  }
  void forward(std::span<const ForwardRequest> requests, std::span<Cache* const> caches,
               Logits& out, const LayerPlan& plan = {}) const {
    m->forward(requests, caches, out, plan);
  }
};

// For each cache protocol of draft_tree.hpp: `draft` proposes trees of every
// tree_configs() shape after a growing S; each expanded node's children
// must be the best tokens (ties to the lower id, best first) of a plain
// forward of S and the node's path. Returns the nodes checked.
template <class Draft>
std::size_t check_proposals(const Draft& draft, const Transformer& plain) {
  const std::size_t V = plain.vocab_size();
  std::size_t expanded = 0;
  for (GenerationConfig cfg : tree_configs(0)) {
    INFO("nodes " << cfg.tree_nodes << " width " << cfg.tree_width << " shape levels "
                  << cfg.tree_shape.size());
    DraftTreeCandidates<Draft> source(draft, V, cfg);
    toy::SourceContext sc(cfg, 1);
    CandidateContext& ctx = sc.ctx;
    source.start(256, 0, ctx);
    for (std::size_t round = 0; round < 4; ++round) {
      std::vector<Token> work = kPrompt;
      // S grows by three tokens a round (the cache holds a prefix of S).
      for (std::size_t i = 0; i < 3 * round; ++i) work.push_back(static_cast<Token>(7 * i + 2));
      const std::size_t n = work.size();
      const std::size_t count = source.propose(work, n, cfg.num_assistant_tokens, ctx);
      REQUIRE(count > 0);
      const auto parent = source.tree_parent();
      // Node -1 is the sequence's last token.
      for (std::int64_t v = -1; v < static_cast<std::int64_t>(count); ++v) {
        std::vector<Token> kids;
        for (std::size_t i = 0; i < count; ++i)
          if (parent[i] == v) kids.push_back(work[n + i]);
        if (kids.empty()) continue;
        std::vector<Token> path(work.begin(), work.begin() + static_cast<std::ptrdiff_t>(n));
        std::vector<Token> up;
        for (std::int64_t a = v; a >= 0; a = parent[static_cast<std::size_t>(a)])
          up.push_back(work[n + static_cast<std::size_t>(a)]);
        path.insert(path.end(), up.rbegin(), up.rend());
        auto cache = plain.make_cache(path.size());
        const Logits l = plain.forward(path, cache);
        const auto row = l.row(l.rows() - 1);
        std::vector<Token> best(V);
        std::iota(best.begin(), best.end(), Token{0});
        std::stable_sort(best.begin(), best.end(), [&](Token a, Token b) {
          return row[static_cast<std::size_t>(a)] > row[static_cast<std::size_t>(b)];
        });
        best.resize(kids.size());
        INFO("round " << round << " node " << v << " depth " << up.size());
        REQUIRE(kids == best);
        ++expanded;
      }
      source.discard(n);
    }
  }
  return expanded;
}

}  // namespace

TEST_CASE("greedy tree proposals: each node's children are the draft's best tokens after its path",
          "[tree][cpu][greedy]") {
  // The CPU backend continues cached trees: each level call feeds the new
  // level alone over the nodes cached before it. Without that capability
  // the ancestors the frontier shares stay cached and the rest are re-fed.
  // Either way a node's row must be, bit for bit, the row of a plain
  // forward of S and its path; wrong positions or parents would only lower
  // acceptance, which the output tests above cannot see.
  const std::string dir = GENERATE("llama-gqa", "gpt2-target", "mistral-window");
  INFO(dir);
  const Transformer draft = Transformer::load(kModels / dir);
  static_assert(ContinuesTrees<Transformer> && !ContinuesTrees<RefeedingDraft>);
  CHECK(check_proposals(draft, draft) > 30);
  CHECK(check_proposals(RefeedingDraft{&draft}, draft) > 30);
  CHECK(check_proposals(AnyModel::borrow(draft), draft) > 30);
}
