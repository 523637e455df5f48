// Tree-shaped drafts (tree_acceptance.hpp, candidates/draft_tree.hpp,
// TreeDecoder, BatchEngine with a tree source) on toy backends:
//  - greedy tree verification walks the target's argmax through the tree,
//    duplicate siblings included;
//  - multi-candidate speculative sampling keeps the target's law exactly:
//    chi-square (significance 0.001) on an 8-token vocabulary with 1e5
//    draws, for several tree shapes, siblings drawn i.i.d. from q (many
//    duplicates), deterministic candidates (one-hot q), q == p and q with
//    zeros where p has mass; the law of the first two tokens is checked, so
//    the residual after rejected siblings and the descent into a subtree
//    both matter;
//  - end to end through TreeDecoder: greedy output == the target's greedy
//    output for dynamic and static trees and every depth, and sampled
//    output tokens 3 and 4 (steady-state rounds, after keep() of accepted
//    paths) follow the target's exact joint law, dynamic and static trees;
//  - sampled tree proposals: siblings distinct (drawn without replacement),
//    each node's q_row the draft's law without its earlier siblings, node
//    counts as the budget rule gives;
//  - BatchEngine with tree sources gives each sequence TreeDecoder's output;
//  - bad tree options are InvalidArgument naming the option.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <tuple>
#include <vector>

#include "assistgen/autoregressive.hpp"
#include "assistgen/batch_engine.hpp"
#include "assistgen/detail/log_sum_exp.hpp"
#include "assistgen/tree_acceptance.hpp"
#include "assistgen/tree_decoder.hpp"
#include "unit/toy_models.hpp"
#include "unit/toy_tree_model.hpp"

using namespace assistgen;
using toy::TreeFnModel;

namespace {

constexpr std::size_t kV = 8;

// Row-wise softmax of a logits table, in double.
std::vector<double> probs_of(const std::vector<float>& logits) {
  std::vector<double> p(logits.size());
  for (std::size_t r = 0; r < kV; ++r) {
    double mx = -1e300, z = 0;
    for (std::size_t c = 0; c < kV; ++c) mx = std::max(mx, double(logits[r * kV + c]));
    for (std::size_t c = 0; c < kV; ++c)
      z += p[r * kV + c] = std::exp(double(logits[r * kV + c]) - mx);
    for (std::size_t c = 0; c < kV; ++c) p[r * kV + c] /= z;
  }
  return p;
}

enum class Siblings { iid, top };  // drawn i.i.d. from q, or q's most likely (one-hot q)

// One tree of the given shape (children per node at each depth) after the
// token `last`, drawn from the draft's Markov table q.
void draw_tree(const std::vector<std::size_t>& shape, Token last, const std::vector<float>& q,
               Siblings how, Rng& rng, std::vector<Token>& tokens,
               std::vector<std::int32_t>& parent) {
  tokens.clear();
  parent.clear();
  std::vector<std::int32_t> level{-1};
  for (const std::size_t m : shape) {
    std::vector<std::int32_t> next;
    for (const std::int32_t f : level) {
      const Token t = f < 0 ? last : tokens[static_cast<std::size_t>(f)];
      std::span<const float> row(q.data() + static_cast<std::size_t>(t) * kV, kV);
      std::vector<std::size_t> order(kV);
      for (std::size_t i = 0; i < kV; ++i) order[i] = i;
      std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return row[a] > row[b]; });
      for (std::size_t j = 0; j < m; ++j) {
        const Token c =
            how == Siblings::iid ? sample_categorical(row, rng) : static_cast<Token>(order[j % kV]);
        next.push_back(static_cast<std::int32_t>(tokens.size()));
        tokens.push_back(c);
        parent.push_back(f);
      }
    }
    level = std::move(next);
  }
}

// The law of the first two tokens emitted after `last` when a round verifies
// a tree (and, when it emits one token, a plain step draws the second).
void check_tree_law(const std::vector<std::size_t>& shape, const std::vector<float>& p_logits,
                    const std::vector<float>& q_probs, Siblings how, int runs = 100000) {
  const std::vector<double> P = probs_of(p_logits);
  std::vector<float> pf(P.begin(), P.end());
  const Token last = 3;
  std::vector<std::size_t> counts(kV * kV, 0);
  Rng tree_rng(7), rng(11);
  std::vector<Token> tokens;
  std::vector<std::int32_t> parent;
  std::vector<std::uint32_t> path;
  std::vector<float> rows;
  std::size_t deep = 0;
  for (int run = 0; run < runs; ++run) {
    draw_tree(shape, last, q_probs, how, tree_rng, tokens, parent);
    rows.assign((tokens.size() + 1) * kV, 0.0f);
    for (std::size_t r = 0; r <= tokens.size(); ++r) {
      const Token t = r == 0 ? last : tokens[r - 1];
      std::copy_n(pf.data() + static_cast<std::size_t>(t) * kV, kV, rows.data() + r * kV);
    }
    const TreeVerdict v = verify_tree_sampling(
        tokens, parent, [&](std::size_t r) { return std::span<float>(rows.data() + r * kV, kV); },
        [&](std::size_t i) -> std::span<const float> {
          if (how == Siblings::top) return {};
          const Token t = parent[i] < 0 ? last : tokens[static_cast<std::size_t>(parent[i])];
          return {q_probs.data() + static_cast<std::size_t>(t) * kV, kV};
        },
        rng, path);
    REQUIRE(v.accepted == path.size());
    std::vector<Token> out;
    for (auto i : path) out.push_back(tokens[i]);
    out.push_back(v.next);
    if (out.size() == 1)
      out.push_back(sample_categorical(
          std::span<const float>(pf.data() + static_cast<std::size_t>(out[0]) * kV, kV), rng));
    if (path.size() >= 2) ++deep;
    ++counts[static_cast<std::size_t>(out[0]) * kV + static_cast<std::size_t>(out[1])];
  }
  std::vector<double> expected(kV * kV);
  for (std::size_t a = 0; a < kV; ++a)
    for (std::size_t b = 0; b < kV; ++b)
      expected[a * kV + b] = P[static_cast<std::size_t>(last) * kV + a] * P[a * kV + b];
  const auto cs = toy::chi_square(counts, expected);
  INFO("chi2 " << cs.statistic << " df " << cs.df << " critical " << toy::chi2_critical_001(cs.df)
               << "; runs accepting two levels: " << deep);
  REQUIRE(cs.impossible == 0);
  REQUIRE(cs.statistic < toy::chi2_critical_001(cs.df));
}

std::vector<float> as_float(const std::vector<double>& p) { return {p.begin(), p.end()}; }

}  // namespace

TEST_CASE("greedy tree verification follows the target's argmax through the tree", "[tree]") {
  // Root children: 5, 2, 5 (a duplicate), 7; under the second 5: 1; under 2: 4.
  const std::vector<Token> tokens{5, 2, 5, 7, 1, 4};
  const std::vector<std::int32_t> parent{-1, -1, -1, -1, 2, 1};
  std::vector<std::uint32_t> path;
  // The target wants 5 then 1 then 6: the first 5 has no child 1, so the
  // walk must stop there (it takes the first matching sibling).
  auto argmax_of = [&](std::vector<Token> want) {
    return [want, &path](std::size_t) { return want[path.size()]; };
  };
  TreeVerdict v = verify_tree_greedy(tokens, parent, argmax_of({5, 1, 6}), path);
  CHECK(v.accepted == 1);
  CHECK(path == std::vector<std::uint32_t>{0});
  CHECK(v.next == 1);
  v = verify_tree_greedy(tokens, parent, argmax_of({2, 4, 0}), path);
  CHECK(v.accepted == 2);
  CHECK(path == std::vector<std::uint32_t>{1, 5});
  CHECK(v.next == 0);
  v = verify_tree_greedy(tokens, parent, argmax_of({3}), path);
  CHECK(v.accepted == 0);
  CHECK(v.next == 3);
  // Rows are asked for in walk order: root, then each accepted node.
  std::vector<std::size_t> asked;
  verify_tree_greedy(
      tokens, parent,
      [&](std::size_t r) {
        asked.push_back(r);
        return Token(std::vector<Token>{2, 4, 0}[asked.size() - 1]);
      },
      path);
  CHECK(asked == std::vector<std::size_t>{0, 2, 6});
}

TEST_CASE("tree speculative sampling keeps the target's law: i.i.d. siblings, several shapes",
          "[tree][statistical]") {
  const std::vector<float> p = toy::random_table(1, kV, 1.5f);
  const std::vector<float> q = as_float(probs_of(toy::random_table(2, kV, 1.5f)));
  const auto shape = GENERATE(std::vector<std::size_t>{1}, std::vector<std::size_t>{3},
                              std::vector<std::size_t>{2, 2}, std::vector<std::size_t>{4, 1, 1},
                              std::vector<std::size_t>{1, 3});
  INFO("shape " << shape.size() << " levels, first " << shape[0]);
  check_tree_law(shape, p, q, Siblings::iid);
}

TEST_CASE(
    "tree speculative sampling keeps the target's law: q == p (duplicate siblings everywhere)",
    "[tree][statistical]") {
  const std::vector<float> p = toy::random_table(3, kV, 2.5f);
  const std::vector<float> q = as_float(probs_of(p));
  check_tree_law({4, 2}, p, q, Siblings::iid);
}

TEST_CASE("tree speculative sampling keeps the target's law: q zero where p has mass",
          "[tree][statistical]") {
  const std::vector<float> p = toy::random_table(4, kV, 1.0f);
  std::vector<float> ql = toy::random_table(5, kV, 1.0f);
  for (std::size_t r = 0; r < kV; ++r)
    for (std::size_t c = 0; c < 3; ++c) ql[r * kV + c] = -1e30f;  // q never proposes tokens 0..2
  check_tree_law({3, 2}, p, as_float(probs_of(ql)), Siblings::iid);
}

TEST_CASE("tree speculative sampling keeps the target's law: deterministic candidates (one-hot q)",
          "[tree][statistical]") {
  const std::vector<float> p = toy::random_table(6, kV, 1.5f);
  const std::vector<float> q = as_float(probs_of(toy::random_table(7, kV, 1.5f)));
  const auto shape = GENERATE(std::vector<std::size_t>{3, 2}, std::vector<std::size_t>{8},
                              std::vector<std::size_t>{2, 1, 1});
  check_tree_law(shape, p, q, Siblings::top);
}

// ---------------------------------------------------------------------------
// End to end through TreeDecoder.

namespace {

std::vector<Token> greedy_alone(const TreeFnModel& target, const std::vector<Token>& prompt,
                                std::size_t n) {
  GenerationConfig cfg{.max_new_tokens = n};
  return generate_autoregressive(target, prompt, cfg).tokens;
}

TreeFnModel hash_tree_model(std::size_t vocab, std::uint64_t seed) {
  return TreeFnModel(vocab, [seed](std::span<const Token> h, std::span<float> row) {
    toy::hash_logits(h, seed, row);
  });
}

TreeFnModel partial_tree_model(std::size_t vocab, std::uint64_t seed, std::uint64_t other,
                               int agree) {
  return TreeFnModel(vocab, [=](std::span<const Token> h, std::span<float> row) {
    const std::uint64_t key = toy::mix64(static_cast<std::uint64_t>(h.back()) * 31 + h.size());
    toy::hash_logits(h, static_cast<int>(key % 100) < agree ? seed : other, row);
  });
}

}  // namespace

TEST_CASE("greedy tree decoding equals the target's greedy output", "[tree][greedy]") {
  const TreeFnModel target = hash_tree_model(40, 1);
  const TreeFnModel good = partial_tree_model(40, 1, 2, 70), bad = hash_tree_model(40, 9);
  const std::vector<Token> prompt{3, 14, 15, 9, 2};
  const auto want = greedy_alone(target, prompt, 50);
  for (const TreeFnModel* draft : {&target, &good, &bad}) {
    for (std::size_t depth : {1, 2, 5, 8}) {
      for (std::size_t nodes : {1, 4, 16, 64}) {
        for (std::size_t width : {1, 2, 4}) {
          INFO("depth " << depth << " nodes " << nodes << " width " << width);
          GenerationConfig cfg{.max_new_tokens = 50, .num_assistant_tokens = depth};
          cfg.tree_nodes = nodes;
          cfg.tree_width = width;
          TreeDecoder dec(*draft, target, cfg);
          const auto r = dec.generate(prompt);
          REQUIRE(r.tokens == want);
          CHECK(r.stats.target_calls == r.stats.rounds);
          CHECK(r.stats.accepted + r.stats.rounds == r.stats.new_tokens);
          // The draft is the target and the tree holds its argmax chain:
          // every round accepts the whole depth (the last one what is left).
          if (draft == &target && width == 1 && nodes >= depth)
            CHECK(r.stats.rounds == (50 + depth) / (depth + 1));
        }
      }
    }
    // Static shapes, capped and uncapped by tree_nodes.
    for (const auto& shape : {std::vector<std::size_t>{3, 2, 1},
                              std::vector<std::size_t>{1, 1, 1, 1}, std::vector<std::size_t>{5}}) {
      for (std::size_t nodes : {0, 4}) {
        GenerationConfig cfg{.max_new_tokens = 50, .num_assistant_tokens = 6};
        cfg.tree_shape = shape;
        cfg.tree_nodes = nodes;
        TreeDecoder dec(*draft, target, cfg);
        REQUIRE(dec.generate(prompt).tokens == want);
      }
    }
  }
}

TEST_CASE("a tree finds more accepted tokens per target call than a chain of the same depth",
          "[tree][greedy]") {
  // The draft's logits are the target's plus noise: the target's choice is
  // often the draft's second or third, which only a tree can propose.
  const TreeFnModel target = hash_tree_model(40, 1);
  const TreeFnModel draft(40, [](std::span<const Token> h, std::span<float> row) {
    toy::hash_logits(h, 1, row);
    std::vector<float> noise(row.size());
    toy::hash_logits(h, 77, noise);
    for (std::size_t i = 0; i < row.size(); ++i) row[i] = 2.0f * row[i] + 1.5f * noise[i];
  });
  const std::vector<Token> prompt{3, 14, 15, 9, 2};
  GenerationConfig chain_cfg{.max_new_tokens = 200, .num_assistant_tokens = 4};
  chain_cfg.tree_nodes = 4;
  chain_cfg.tree_width = 1;  // a chain written as a tree
  GenerationConfig tree_cfg = chain_cfg;
  tree_cfg.tree_nodes = 24;
  tree_cfg.tree_width = 4;
  const auto chain = TreeDecoder(draft, target, chain_cfg).generate(prompt);
  const auto tree = TreeDecoder(draft, target, tree_cfg).generate(prompt);
  REQUIRE(chain.tokens == tree.tokens);
  CHECK(tree.stats.tokens_per_target_call() > chain.stats.tokens_per_target_call());
}

TEST_CASE("sampled tree decoding: tokens 3 and 4 follow the target's law in steady-state rounds",
          "[tree][statistical][steady]") {
  // An unrelated draft, and one close to the target (paths of two accepted
  // often, so later rounds follow keep() of a tree path).
  const std::vector<float> pl = toy::random_table(1, kV, 1.5f);
  const bool close = GENERATE(false, true);
  std::vector<float> ql = toy::random_table(2, kV, 1.5f);
  if (close)
    for (std::size_t i = 0; i < ql.size(); ++i) ql[i] = 2.0f * pl[i] + 0.3f * ql[i];
  const TreeFnModel target = toy::tree_table_model(kV, pl), draft = toy::tree_table_model(kV, ql);
  // Dynamic trees (nodes, width, depth), one a single level (3 siblings
  // fill the budget: sampled children are never cut), and static shapes
  // (width 0 here), one capped by tree_nodes.
  using Tree = std::tuple<std::size_t, std::size_t, std::size_t, std::vector<std::size_t>>;
  const auto [nodes, width, depth, shape] =
      GENERATE(Tree{4, 2, 2, {}}, Tree{3, 3, 2, {}}, Tree{7, 2, 3, {}}, Tree{0, 0, 3, {2, 2, 1}},
               Tree{5, 0, 3, {3, 1, 1}});
  INFO((close ? "close" : "unrelated") << " draft, nodes " << nodes << " width " << width
                                       << " depth " << depth << " shape of " << shape.size());
  GenerationConfig cfg{.max_new_tokens = 6, .num_assistant_tokens = depth, .do_sample = true};
  cfg.tree_nodes = nodes;
  if (width > 0) cfg.tree_width = width;
  cfg.tree_shape = shape;
  TreeDecoder dec(draft, target, cfg);
  const std::vector<Token> prompt{2, 5};
  std::vector<std::size_t> counts(kV * kV, 0);
  std::size_t later_rounds = 0, multi_accept = 0;
  std::size_t emitted = 0;
  bool counted = false;
  dec.set_round_observer([&](const auto& r) {
    const std::size_t end = emitted + r.emitted.size();
    if (!counted && emitted <= 3 && 3 < end) {
      counted = true;
      if (r.round > 0) ++later_rounds;
    }
    if (r.accepted >= 2) ++multi_accept;
    emitted = end;
  });
  constexpr int kRuns = 100000;
  for (int i = 0; i < kRuns; ++i) {
    emitted = 0;
    counted = false;
    dec.set_seed(static_cast<std::uint64_t>(i));
    const auto r = dec.generate(prompt);
    REQUIRE(r.tokens.size() == 6);
    ++counts[static_cast<std::size_t>(r.tokens[3]) * kV + static_cast<std::size_t>(r.tokens[4])];
  }
  // Exact law: (P^4)[5, a] P[a, b] (token 0 follows the prompt's 5).
  const auto P = probs_of(pl);
  std::vector<double> dist(kV, 0.0);
  dist[5] = 1.0;
  for (int step = 0; step < 4; ++step) {
    std::vector<double> nd(kV, 0.0);
    for (std::size_t a = 0; a < kV; ++a)
      for (std::size_t b = 0; b < kV; ++b) nd[b] += dist[a] * P[a * kV + b];
    dist = nd;
  }
  std::vector<double> expected(kV * kV);
  for (std::size_t a = 0; a < kV; ++a)
    for (std::size_t b = 0; b < kV; ++b) expected[a * kV + b] = dist[a] * P[a * kV + b];
  const auto cs = toy::chi_square(counts, expected);
  INFO("chi2 " << cs.statistic << " df " << cs.df << "; token 3 from a later round " << later_rounds
               << ", rounds accepting 2 " << multi_accept);
  REQUIRE(cs.impossible == 0);
  REQUIRE(cs.statistic < toy::chi2_critical_001(cs.df));
  CHECK(later_rounds == static_cast<std::size_t>(kRuns));
  if (close && !(shape.empty() && nodes <= width)) CHECK(multi_accept > 10000);
}

TEST_CASE("sampled tree proposals: siblings drawn without replacement, each with its law",
          "[tree][sampling]") {
  // The draft is a Markov table: the q of a node's children is the softmax
  // of its token's row. Counts follow the budget rule of draft_tree.hpp.
  const std::vector<float> ql = toy::random_table(2, kV, 1.5f);
  const std::vector<double> Q = probs_of(ql);
  const TreeFnModel draft = toy::tree_table_model(kV, ql);
  struct Shape {
    std::size_t nodes, width, depth;
    std::vector<std::size_t> shape;
    std::size_t count;  // nodes every proposal has (the support is never used up)
  };
  for (const Shape& sh : {Shape{7, 3, 3, {}, 7}, Shape{5, 2, 4, {}, 5}, Shape{2, 4, 2, {}, 2},
                          Shape{20, 2, 3, {}, 10}, Shape{0, 1, 3, {2, 2, 1}, 10},
                          Shape{5, 1, 3, {2, 2, 1}, 5}, Shape{40, 8, 2, {}, 40}}) {
    INFO("nodes " << sh.nodes << " width " << sh.width << " depth " << sh.depth << " shape of "
                  << sh.shape.size());
    GenerationConfig cfg{.max_new_tokens = 20, .num_assistant_tokens = sh.depth, .do_sample = true};
    cfg.tree_nodes = sh.nodes;
    cfg.tree_width = sh.width;
    cfg.tree_shape = sh.shape;
    cfg.top_k = 0;
    DraftTreeCandidates<TreeFnModel> source(draft, kV, cfg);
    toy::SourceContext sc(cfg, 5);
    CandidateContext& ctx = sc.ctx;
    source.start(64, 0, ctx);
    for (int round = 0; round < 300; ++round) {
      std::vector<Token> work{2, static_cast<Token>(round % kV)};
      const std::size_t count = source.propose(work, 2, sh.depth, ctx);
      REQUIRE(count == sh.count);
      REQUIRE(work.size() == 2 + count);
      const auto parent = source.tree_parent();
      for (std::size_t i = 0; i < count; ++i) {
        const Token from = parent[i] < 0 ? work[1] : work[2 + static_cast<std::size_t>(parent[i])];
        // The siblings before i, in order.
        std::vector<Token> before;
        for (std::size_t j = 0; j < i; ++j)
          if (parent[j] == parent[i]) before.push_back(work[2 + j]);
        const Token t = work[2 + i];
        REQUIRE(std::find(before.begin(), before.end(), t) == before.end());
        double kept = 1.0;
        for (const Token b : before) kept -= Q[static_cast<std::size_t>(from) * kV + b];
        const auto q = source.q_row(i);
        REQUIRE(q.size() == kV);
        for (std::size_t v = 0; v < kV; ++v) {
          const bool gone =
              std::find(before.begin(), before.end(), static_cast<Token>(v)) != before.end();
          const double want = gone ? 0.0 : Q[static_cast<std::size_t>(from) * kV + v] / kept;
          REQUIRE(std::abs(double(q[v]) - want) <= 1e-5 * want + 1e-7);
        }
      }
      source.discard(2);
    }
  }
}

TEST_CASE("BatchEngine with tree sources gives each sequence TreeDecoder's output",
          "[tree][batch]") {
  const TreeFnModel target = hash_tree_model(40, 1);
  const TreeFnModel draft = partial_tree_model(40, 1, 2, 70);
  const std::vector<std::vector<Token>> prompts{{3, 14, 15}, {9, 2, 6, 5, 3}, {1}, {7, 7, 7, 7}};
  const bool sample = GENERATE(false, true);
  BatchEngine<TreeFnModel, DraftTreeCandidates<TreeFnModel>> engine(target, {.max_batch = 3});
  std::vector<GenerationConfig> cfgs;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    GenerationConfig cfg{.max_new_tokens = 20 + 3 * i,
                         .num_assistant_tokens = 2 + i,
                         .do_sample = sample,
                         .seed = 100 + i};
    cfg.tree_nodes = 4 * (i + 1);
    cfg.tree_width = 1 + i % 3;
    cfgs.push_back(cfg);
    engine.submit(prompts[i], cfg, DraftTreeCandidates<TreeFnModel>(draft, 40, cfg));
  }
  engine.run();
  auto done = engine.take_finished();
  REQUIRE(done.size() == prompts.size());
  for (const auto& f : done) {
    REQUIRE(!f.error);
    TreeDecoder dec(draft, target, cfgs[f.id]);
    const auto alone = dec.generate(prompts[f.id]);
    CHECK(f.result.tokens == alone.tokens);
    if (!sample)
      CHECK(f.result.tokens == greedy_alone(target, prompts[f.id], cfgs[f.id].max_new_tokens));
  }
}

TEST_CASE(
    "greedy tree children: the best tokens, ties to the lower id, never a NaN or a masked one",
    "[tree][greedy]") {
  // Rows of a Markov table with ties, -infinity and NaN entries; a static
  // shape takes up to 4 children of the root and 3 of each child.
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> table(kV * kV, 0.0f);
  const std::vector<std::vector<float>> rows{
      {1, 3, 3, nan, 2, 3, 0, -kInf},                        // token 0: 1, 2, 5 tie, then 4
      {nan, nan, 5, 5, 5, 5, 5, 5},                          // token 1: 2, 3, 4, 5
      {-kInf, -kInf, -kInf, 4, -kInf, -kInf, -kInf, -kInf},  // token 2: 3 alone
      {0, 0, 0, 0, 0, 0, 0, 0},                              // token 3: 0, 1, 2, 3
      {2, 1, nan, 7, 7, 1, 2, 9},                            // token 4: 7, 3, 4, 0
      {nan, nan, nan, nan, nan, nan, nan, -1},               // token 5: 7 alone
      {1, 2, 3, 4, 5, 6, 7, 8},                              // token 6: 7, 6, 5, 4
      {8, 7, 6, 5, 4, 3, 2, 1}};                             // token 7: 0, 1, 2, 3
  for (std::size_t r = 0; r < kV; ++r)
    std::copy(rows[r].begin(), rows[r].end(), table.begin() + r * kV);
  const TreeFnModel draft = toy::tree_table_model(kV, table);
  GenerationConfig cfg{.max_new_tokens = 8, .num_assistant_tokens = 2};
  cfg.tree_shape = {4, 3};
  DraftTreeCandidates<TreeFnModel> source(draft, kV, cfg);
  toy::SourceContext sc(cfg, 1);
  CandidateContext& ctx = sc.ctx;
  source.start(64, 0, ctx);
  // The expected best tokens of a row: finite or -infinity values, highest
  // first, ties to the lower id, -infinity ones dropped, at most `k`.
  auto best = [&](Token from, std::size_t k) {
    std::vector<Token> ids;
    for (std::size_t v = 0; v < kV; ++v) {
      const float x = table[static_cast<std::size_t>(from) * kV + v];
      if (x == x && x != -kInf) ids.push_back(static_cast<Token>(v));
    }
    std::stable_sort(ids.begin(), ids.end(), [&](Token a, Token b) {
      return table[static_cast<std::size_t>(from) * kV + static_cast<std::size_t>(a)] >
             table[static_cast<std::size_t>(from) * kV + static_cast<std::size_t>(b)];
    });
    if (ids.size() > k) ids.resize(k);
    return ids;
  };
  for (Token last = 0; last < static_cast<Token>(kV); ++last) {
    INFO("after token " << last);
    std::vector<Token> work{3, last};
    const std::size_t count = source.propose(work, 2, 2, ctx);
    const auto parent = source.tree_parent();
    std::vector<Token> roots;
    for (std::size_t i = 0; i < count; ++i)
      if (parent[i] < 0) roots.push_back(work[2 + i]);
    REQUIRE(roots == best(last, 4));
    for (std::size_t i = 0; i < count; ++i) {
      if (parent[i] >= 0) continue;
      std::vector<Token> kids;
      for (std::size_t j = 0; j < count; ++j)
        if (parent[j] == static_cast<std::int32_t>(i)) kids.push_back(work[2 + j]);
      REQUIRE(kids == best(work[2 + i], 3));
    }
    source.discard(2);
  }
}

TEST_CASE("tree options are checked", "[tree]") {
  const TreeFnModel m = hash_tree_model(10, 1);
  GenerationConfig cfg;
  cfg.tree_nodes = 8;
  cfg.tree_width = 0;
  CHECK_THROWS_WITH(TreeDecoder(m, m, cfg), Catch::Contains("tree_width"));
  cfg.tree_width = 2;
  cfg.tree_shape = {2, 0};
  CHECK_THROWS_WITH(TreeDecoder(m, m, cfg), Catch::Contains("tree_shape[1]"));
  cfg.tree_shape = {64, 64, 64};
  CHECK_THROWS_AS(TreeDecoder(m, m, cfg), InvalidArgument);
  cfg.tree_shape = {};
  cfg.tree_nodes = 0;
  CHECK_THROWS_WITH(TreeDecoder(m, m, cfg), Catch::Contains("tree_nodes"));
  // A target without tree attention: the first round says so.
  const toy::FnModel plain = toy::hash_model(10, 1);
  cfg.tree_nodes = 4;
  TreeDecoder dec(m, plain, cfg);
  const std::vector<Token> prompt{1, 2};
  CHECK_THROWS_AS(dec.generate(prompt), UnsupportedError);
}

TEST_CASE("log_sum_exp: within 1e-6 of the double sum, the same bits on every path", "[tree]") {
  // The tree drafts' normalizer: rows of several lengths (tails of 0-7
  // elements past the 8 lanes), spreads from 0.01 to 30 nats, masked
  // (-inf) entries and entries far below the maximum.
  std::mt19937 gen(7);
  for (std::size_t n : {1, 7, 8, 9, 100, 4096, 32000}) {
    for (float sd : {0.01f, 3.0f, 30.0f}) {
      std::normal_distribution<float> dist(0.0f, sd);
      std::vector<float> row(n);
      for (auto& x : row) x = dist(gen);
      if (n > 8) row[3] = -std::numeric_limits<float>::infinity(), row[5] = -1e30f;
      float mx = -std::numeric_limits<float>::infinity();
      for (float x : row) mx = std::max(mx, x);
      double z = 0;
      for (float x : row) z += std::exp(double(x) - double(mx));
      const double want = double(mx) + std::log(z);
      const double got = detail::log_sum_exp(row, mx);
      const double portable = detail::log_sum_exp_portable(row, mx);
      INFO("n " << n << " sd " << sd);
      CHECK(std::abs(got - want) <= 1e-6 * std::max(1.0, std::abs(want)));
      CHECK(std::memcmp(&got, &portable, sizeof got) == 0);
    }
  }
  const std::vector<float> one{2.5f};
  CHECK(detail::log_sum_exp(one, 2.5f) == 2.5);
}
