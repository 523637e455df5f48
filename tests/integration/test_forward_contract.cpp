// The extended forward contract of backend.hpp on cpu::Transformer, for f32,
// bf16 and int8 weights and three families (Llama; Qwen2 with a sliding
// window; GPT-2 with learned positions):
//  - several sequences in one call: each row's logits are the bits of the
//    same sequence run alone;
//  - `outputs`: the rows kept are the bits of the full call's last rows;
//  - trees: every node's logits are the bits of its root-to-node chain run
//    alone (ancestor masks, depth positions, the window over ancestors), and
//    keep() of a branch leaves the cache the chain would have left: decoding
//    on from it gives the chain's bits; the same when the tree is fed a
//    level per call over its cached nodes (tree_base);
//  - layer plans: early exit and the equivalent skip set agree, all layers
//    is the plain forward, and the K/V rows of the layers that ran are the
//    bits a full forward writes;
//  - the generic fallbacks (forward_batch, keep_rows) on a backend that only
//    has forward(tokens, cache), and the errors of bad requests, with every
//    cache left as it was.
#include <catch2/catch.hpp>
#include <cstring>
#include <vector>

#include "assistgen/backend.hpp"
#include "assistgen/cpu/transformer.hpp"
#include "integration/random_models.hpp"
#include "unit/toy_models.hpp"

using namespace assistgen;
using namespace assistgen::testing_models;
using cpu::Transformer;
using toy::FnModel;
using toy::ToyCache;

namespace {

// Logits of `tokens` run alone, as one chain from an empty cache.
Logits alone(const Transformer& m, std::span<const Token> tokens) {
  auto cache = m.make_cache(tokens.size() + 4);
  return m.forward(tokens, cache);
}

// A tree of `n` nodes: node i's parent is drawn from -1..i-1 by a fixed
// recipe that makes both deep branches (longer than Qwen2's window of 6) and
// siblings.
std::vector<std::int32_t> some_tree(std::size_t n) {
  std::vector<std::int32_t> parent(n);
  for (std::size_t i = 0; i < n; ++i)
    parent[i] = i == 0 ? -1 : (i % 3 == 0 ? static_cast<std::int32_t>(i) - 3 : static_cast<std::int32_t>(i) - 1);
  return parent;
}

// Root-to-node chain of node i (indices into the tree's tokens).
std::vector<std::size_t> path_to(std::span<const std::int32_t> parent, std::size_t i) {
  std::vector<std::size_t> p;
  for (std::int64_t a = static_cast<std::int64_t>(i); a >= 0; a = parent[static_cast<std::size_t>(a)])
    p.insert(p.begin(), static_cast<std::size_t>(a));
  return p;
}

}  // namespace

TEST_CASE("a batch of sequences gives each row the bits of its sequence run alone", "[contract][batch]") {
  const DType dtype = GENERATE(DType::f32, DType::bf16, DType::i8);
  const std::string family = GENERATE("llama", "qwen2", "gpt2");
  INFO(family << " " << name_of(dtype));
  const Transformer m = Transformer::random(config(family), 11, {.dtype = dtype, .threads = 1});
  const std::size_t V = m.vocab_size();
  // Three sequences with different cached prefixes and block lengths.
  const auto a = some_tokens(19, V), b = some_tokens(9, V), c = some_tokens(30, V);
  const std::size_t pa = 12, pb = 8, pc = 1;
  const Logits ra = alone(m, a), rb = alone(m, b), rc = alone(m, c);
  auto ca = m.make_cache(64), cb = m.make_cache(64), cc = m.make_cache(64);
  m.forward(std::span(a).first(pa), ca);
  m.forward(std::span(b).first(pb), cb);
  m.forward(std::span(c).first(pc), cc);
  const ForwardRequest reqs[] = {{std::span(a).subspan(pa)}, {std::span(b).subspan(pb)},
                                 {std::span(c).subspan(pc), {}, 5}};
  Transformer::Cache* caches[] = {&ca, &cb, &cc};
  Logits out;
  m.forward(reqs, caches, out);
  REQUIRE(out.rows() == (a.size() - pa) + (b.size() - pb) + 5);
  std::size_t row = 0;
  for (std::size_t i = pa; i < a.size(); ++i) CHECK(same_row(out, row++, ra, i));
  for (std::size_t i = pb; i < b.size(); ++i) CHECK(same_row(out, row++, rb, i));
  for (std::size_t i = c.size() - 5; i < c.size(); ++i) CHECK(same_row(out, row++, rc, i));
  CHECK(ca.size() == a.size());
  CHECK(cb.size() == b.size());
  CHECK(cc.size() == c.size());
  // And decoding on from the batched caches, one sequence at a time.
  const Token next = 7;
  std::vector<Token> a2 = a;
  a2.push_back(next);
  CHECK(same_row(m.forward(std::span(&next, 1), ca), 0, alone(m, a2), a.size()));
}

TEST_CASE("outputs keeps the last rows with the bits of the full call", "[contract][outputs]") {
  const DType dtype = GENERATE(DType::f32, DType::bf16, DType::i8);
  const std::string family = GENERATE("llama", "qwen2", "gpt2");
  INFO(family << " " << name_of(dtype));
  const Transformer m = Transformer::random(config(family), 3, {.dtype = dtype, .threads = 1});
  const auto t = some_tokens(40, m.vocab_size());
  const Logits full = alone(m, t);
  for (const std::size_t outputs : {std::size_t{0}, std::size_t{1}, std::size_t{3}, std::size_t{40}, kAllRows}) {
    INFO("outputs " << outputs);
    auto cache = m.make_cache(48);
    const ForwardRequest req{t, {}, outputs};
    Transformer::Cache* cp = &cache;
    Logits out;
    m.forward({&req, 1}, {&cp, 1}, out);
    const std::size_t rows = std::min(outputs, t.size());
    REQUIRE(out.rows() == rows);
    for (std::size_t r = 0; r < rows; ++r) CHECK(same_row(out, r, full, t.size() - rows + r));
    CHECK(cache.size() == t.size());
  }
}

TEST_CASE("tree nodes get the bits of their chains, and keep() of a branch continues like the chain",
          "[contract][tree]") {
  const DType dtype = GENERATE(DType::f32, DType::bf16, DType::i8);
  const std::string family = GENERATE("llama", "qwen2", "gpt2");
  INFO(family << " " << name_of(dtype));
  const Transformer m = Transformer::random(config(family), 17, {.dtype = dtype, .threads = 1});
  const std::size_t V = m.vocab_size();
  const auto prefix = some_tokens(10, V);
  constexpr std::size_t kNodes = 16;
  const auto parent = some_tree(kNodes);
  std::vector<Token> nodes(kNodes);
  for (std::size_t i = 0; i < kNodes; ++i) nodes[i] = static_cast<Token>((i * 53 + 29) % V);

  auto cache = m.make_cache(64);
  m.forward(prefix, cache);
  const ForwardRequest req{nodes, parent};
  Transformer::Cache* cp = &cache;
  Logits out;
  m.forward({&req, 1}, {&cp, 1}, out);
  REQUIRE(out.rows() == kNodes);
  REQUIRE(cache.size() == prefix.size() + kNodes);

  // Each node against its chain: prefix + the tokens on its path.
  for (std::size_t i = 0; i < kNodes; ++i) {
    std::vector<Token> chain = prefix;
    for (std::size_t a : path_to(parent, i)) chain.push_back(nodes[a]);
    INFO("node " << i << " depth " << chain.size() - prefix.size() - 1);
    CHECK(same_row(out, i, alone(m, chain), chain.size() - 1));
  }

  // Keep the deepest branch, then decode one more token: the chain's bits.
  const std::size_t leaf = kNodes - 1;
  const auto path = path_to(parent, leaf);
  std::vector<std::uint32_t> slots;
  std::vector<Token> chain = prefix;
  for (std::size_t a : path) {
    slots.push_back(static_cast<std::uint32_t>(prefix.size() + a));
    chain.push_back(nodes[a]);
  }
  cache.keep(prefix.size(), slots);
  REQUIRE(cache.size() == chain.size());
  const Token next = 5;
  chain.push_back(next);
  CHECK(same_row(m.forward(std::span(&next, 1), cache), 0, alone(m, chain), chain.size() - 1));
}

TEST_CASE("a tree fed level by level over its cached nodes gets the bits of its chains",
          "[contract][tree][continued]") {
  // ForwardRequest::tree_base: each level of some_tree(kNodes) in its own
  // call, every earlier node left in the cache; each node's logits are the
  // bits of its root-to-node chain run alone (sibling branches cached
  // beside it stay invisible; depth positions through the cached nodes,
  // learned positions, the window over cached ancestors).
  const DType dtype = GENERATE(DType::f32, DType::bf16, DType::i8);
  const std::string family = GENERATE("llama", "qwen2", "gpt2");
  INFO(family << " " << name_of(dtype));
  const Transformer m = Transformer::random(config(family), 17, {.dtype = dtype, .threads = 1});
  static_assert(ContinuesTrees<Transformer>);
  const std::size_t V = m.vocab_size();
  const auto prefix = some_tokens(10, V);
  constexpr std::size_t kNodes = 16;
  const auto parent = some_tree(kNodes);
  std::vector<std::size_t> depth(kNodes);
  for (std::size_t i = 0; i < kNodes; ++i)
    depth[i] = parent[i] < 0 ? 0 : depth[static_cast<std::size_t>(parent[i])] + 1;
  std::vector<Token> nodes(kNodes);
  for (std::size_t i = 0; i < kNodes; ++i) nodes[i] = static_cast<Token>((i * 53 + 29) % V);

  auto cache = m.make_cache(64);
  m.forward(prefix, cache);
  std::vector<std::int32_t> slot(kNodes, -1), cached_parent;
  std::size_t checked = 0;
  for (std::size_t d = 0; checked < kNodes; ++d) {
    std::vector<Token> tokens;
    std::vector<std::int32_t> parents;
    std::vector<std::size_t> level;
    for (std::size_t i = 0; i < kNodes; ++i) {
      if (depth[i] != d) continue;
      level.push_back(i);
      tokens.push_back(nodes[i]);
      const std::int32_t p = parent[i];
      parents.push_back(p < 0 ? -1 : -2 - slot[static_cast<std::size_t>(p)]);
    }
    const ForwardRequest req{tokens, parents, kAllRows, prefix.size(), cached_parent};
    Transformer::Cache* cp = &cache;
    Logits out;
    forward_batch(m, std::span(&req, 1), std::span(&cp, 1), out);
    REQUIRE(out.rows() == level.size());
    for (std::size_t r = 0; r < level.size(); ++r) {
      const std::size_t i = level[r];
      std::vector<Token> chain = prefix;
      for (std::size_t a : path_to(parent, i)) chain.push_back(nodes[a]);
      INFO("node " << i << " depth " << d);
      CHECK(same_row(out, r, alone(m, chain), chain.size() - 1));
      slot[i] = static_cast<std::int32_t>(cached_parent.size());
      cached_parent.push_back(parents[r] == -1 ? -1 : -2 - parents[r]);
      ++checked;
    }
  }
  REQUIRE(cache.size() == prefix.size() + kNodes);

  // Malformed continuations are InvalidArgument, the cache untouched.
  const Token one[] = {3};
  const std::int32_t root[] = {-1}, past[] = {-2 - static_cast<std::int32_t>(kNodes)};
  Transformer::Cache* cp = &cache;
  Logits out;
  auto call = [&](const ForwardRequest& r) { m.forward(std::span(&r, 1), std::span(&cp, 1), out); };
  CHECK_THROWS_AS(call({one, past, kAllRows, prefix.size(), cached_parent}), InvalidArgument);
  CHECK_THROWS_AS(call({one, root, kAllRows, prefix.size() + 1, cached_parent}), InvalidArgument);
  CHECK_THROWS_AS(call({one, {}, kAllRows, prefix.size(), cached_parent}), InvalidArgument);
  CHECK_THROWS_AS(call({one, root, kAllRows, 0, cached_parent}), InvalidArgument);
  CHECK_THROWS_AS(call({one, root, kAllRows, kNoTreeBase, cached_parent}), InvalidArgument);
  std::vector<std::int32_t> loop = cached_parent;
  loop[3] = 3;
  CHECK_THROWS_AS(call({one, root, kAllRows, prefix.size(), loop}), InvalidArgument);
  CHECK(cache.size() == prefix.size() + kNodes);
}

TEST_CASE("a chain written as a parent array is the plain chain, beside other requests", "[contract][tree]") {
  const std::string family = GENERATE("llama", "qwen2", "gpt2");
  const Transformer m = Transformer::random(config(family), 23, {.dtype = DType::bf16, .threads = 1});
  const auto t = some_tokens(12, m.vocab_size());
  const Logits ref = alone(m, t);
  std::vector<std::int32_t> chain(8);
  for (std::size_t i = 0; i < chain.size(); ++i) chain[i] = static_cast<std::int32_t>(i) - 1;
  auto c1 = m.make_cache(32), c2 = m.make_cache(32);
  m.forward(std::span(t).first(4), c1);
  const auto tree = some_tree(6);
  const auto other = some_tokens(6, m.vocab_size());
  const ForwardRequest reqs[] = {{other, tree}, {std::span(t).subspan(4), chain}};
  Transformer::Cache* caches[] = {&c2, &c1};
  Logits out;
  m.forward(reqs, caches, out);
  for (std::size_t i = 0; i < 8; ++i) CHECK(same_row(out, 6 + i, ref, 4 + i));
}

TEST_CASE("layer plans: early exit, its skip set and all layers", "[contract][layers]") {
  const DType dtype = GENERATE(DType::f32, DType::i8);
  ModelConfig cfg = config("llama");
  cfg.num_hidden_layers = 4;
  const Transformer m = Transformer::random(cfg, 31, {.dtype = dtype, .threads = 1});
  const auto t = some_tokens(9, m.vocab_size());
  auto run = [&](const LayerPlan& plan, Transformer::Cache& cache) {
    const ForwardRequest req{t};
    Transformer::Cache* cp = &cache;
    Logits out;
    m.forward({&req, 1}, {&cp, 1}, out, plan);
    return out;
  };
  auto c_full = m.make_cache(16), c_all = m.make_cache(16), c_exit = m.make_cache(16), c_skip = m.make_cache(16);
  const Logits full = m.forward(t, c_full);
  const Logits all = run(LayerPlan{}, c_all);
  const Logits exit2 = run(LayerPlan{.early_exit = 2}, c_exit);
  const std::uint32_t upper[] = {3, 2};
  const Logits skip = run(LayerPlan{.skip = upper}, c_skip);
  for (std::size_t r = 0; r < t.size(); ++r) {
    CHECK(same_row(all, r, full, r));
    CHECK(same_row(exit2, r, skip, r));
  }
  CHECK(std::memcmp(exit2.data(), full.data(), full.rows() * full.cols() * sizeof(float)) != 0);
  // The layers that ran wrote the bits a full forward writes.
  const KvStorage &a = c_exit.kv(), &b = c_full.kv();
  for (std::size_t l = 0; l < 2; ++l)
    for (std::size_t h = 0; h < a.kv_heads(); ++h)
      for (std::size_t p = 0; p < t.size(); ++p) {
        CHECK(std::memcmp(a.key(l, h, p), b.key(l, h, p), a.head_dim() * sizeof(float)) == 0);
        CHECK(std::memcmp(a.value(l, h, p), b.value(l, h, p), a.head_dim() * sizeof(float)) == 0);
      }
  auto c_bad = m.make_cache(16);
  CHECK_THROWS_AS(run(LayerPlan{.early_exit = 5}, c_bad), InvalidArgument);
  const std::uint32_t bad[] = {4};
  CHECK_THROWS_AS(run(LayerPlan{.skip = bad}, c_bad), InvalidArgument);
  CHECK(c_bad.size() == 0);
}

TEST_CASE("bad requests are errors that leave every cache as it was", "[contract][errors]") {
  const Transformer m = Transformer::random(config("gpt2"), 2, {.dtype = DType::f32, .threads = 1});
  const auto t = some_tokens(6, m.vocab_size());
  auto c1 = m.make_cache(8), c2 = m.make_cache(8);
  m.forward(std::span(t).first(2), c1);
  Logits out;
  auto call = [&](std::initializer_list<ForwardRequest> reqs, std::initializer_list<Transformer::Cache*> caches) {
    const std::vector<ForwardRequest> r(reqs);
    const std::vector<Transformer::Cache*> c(caches);
    m.forward(std::span(r), std::span(c), out);
  };
  const std::int32_t bad_parent[] = {-1, 1};
  const std::int32_t short_parent[] = {-1};
  CHECK_THROWS_AS(call({{t}, {t}}, {&c1, &c1}), InvalidArgument);               // one cache twice
  CHECK_THROWS_AS(call({{t}}, {&c1, &c2}), InvalidArgument);                    // count mismatch
  CHECK_THROWS_AS(call({{t}, {{}}}, {&c2, &c1}), InvalidArgument);              // empty request
  CHECK_THROWS_AS(call({{std::span(t).first(2), bad_parent}}, {&c2}), InvalidArgument);
  CHECK_THROWS_AS(call({{std::span(t).first(2), short_parent}}, {&c2}), InvalidArgument);
  const auto seven = some_tokens(7, m.vocab_size());
  CHECK_THROWS_AS(call({{std::span(t).first(2)}, {seven}}, {&c2, &c1}), CapacityError);  // 2 + 7 > 8
  CHECK(c1.size() == 2);
  CHECK(c2.size() == 0);
  // keep() checks its rows.
  m.forward(std::span(t).first(4), c2);
  const std::uint32_t unordered[] = {3, 2};
  const std::uint32_t below[] = {1};
  CHECK_THROWS_AS(c2.keep(2, unordered), InvalidArgument);
  CHECK_THROWS_AS(c2.keep(2, below), InvalidArgument);
  CHECK(c2.size() == 4);
  c2.keep(1, std::span<const std::uint32_t>());
  CHECK(c2.size() == 1);
}

TEST_CASE("backends with only forward(tokens, cache) get the generic fallbacks", "[contract][fallback]") {
  // logits(row) = one-hot of (sum of the history) mod vocab.
  const FnModel model(13, [](std::span<const Token> h, std::span<float> row) {
    std::fill(row.begin(), row.end(), 0.0f);
    long s = 0;
    for (Token t : h) s += t;
    row[static_cast<std::size_t>(s % 13)] = 1.0f;
  });
  static_assert(!ForwardsBatches<FnModel> && !CacheHasKeep<ToyCache>);
  auto c1 = model.make_cache(16), c2 = model.make_cache(16);
  const Token a[] = {1, 2, 3}, b[] = {4, 5};
  const ForwardRequest reqs[] = {{a}, {b, {}, 1}};
  ToyCache* caches[] = {&c1, &c2};
  Logits out;
  forward_batch(model, std::span(reqs), std::span(caches), out);
  REQUIRE(out.rows() == 4);
  CHECK(out.row(0)[1] == 1.0f);
  CHECK(out.row(1)[3] == 1.0f);
  CHECK(out.row(2)[6] == 1.0f);
  CHECK(out.row(3)[9] == 1.0f);  // only b's last row: 4 + 5
  CHECK(c1.size() == 3);
  CHECK(c2.size() == 2);
  // A chain written as parents runs; a real tree and a layer plan are
  // UnsupportedError before any cache changes.
  const std::int32_t chain[] = {-1, 0}, tree[] = {-1, -1};
  const Token two[] = {7, 8};
  const ForwardRequest chain_req[] = {{two, chain}};
  const ForwardRequest tree_req[] = {{two, tree}};
  ToyCache* one_cache[] = {&c1};
  forward_batch(model, std::span(chain_req), std::span(one_cache), out);
  CHECK(c1.size() == 5);
  CHECK_THROWS_AS(forward_batch(model, std::span(tree_req), std::span(one_cache), out), UnsupportedError);
  CHECK_THROWS_AS(forward_batch(model, std::span(chain_req), std::span(one_cache), out, LayerPlan{.early_exit = 1}),
                  UnsupportedError);
  // So is the continuation of a cached tree (tree_base), even as a chain.
  const ForwardRequest continued[] = {{two, chain, kAllRows, 5, {}}};
  static_assert(!ContinuesTrees<FnModel>);
  CHECK_THROWS_AS(forward_batch(model, std::span(continued), std::span(one_cache), out),
                  UnsupportedError);
  CHECK(c1.size() == 5);
  // keep_rows: rows already in place are a truncate; a move is unsupported.
  const std::uint32_t in_place[] = {2, 3}, moved[] = {3};
  keep_rows(c1, 2, in_place);
  CHECK(c1.size() == 4);
  CHECK_THROWS_AS(keep_rows(c1, 2, moved), UnsupportedError);
  CHECK(c1.size() == 4);
}
