// AnyModel: type erasure of CausalLM. It forwards exactly what the wrapped
// model computes, its caches roll back, a cache from another model is
// rejected, and decoders over AnyModel give the same output as over the
// concrete types, with backends of different types chosen at run time.
#include <catch2/catch.hpp>
#include <memory>
#include <vector>

#include "assistgen/any_model.hpp"
#include "assistgen/autoregressive.hpp"
#include "assistgen/speculative_decoder.hpp"
#include "unit/toy_models.hpp"

using namespace assistgen;
using toy::FnModel;
using toy::ToyCache;

namespace {

/// A second backend type, so erasure has two types to tell apart.
class ShiftModel {
 public:
  struct Cache {
    std::size_t n = 0, cap = 0;
    std::size_t size() const { return n; }
    std::size_t capacity() const { return cap; }
    void truncate(std::size_t k) {
      if (k > n) throw InvalidArgument("ShiftModel::Cache::truncate beyond size");
      n = k;
    }
  };
  std::size_t vocab_size() const { return 16; }
  Cache make_cache(std::size_t cap) const { return {0, cap}; }
  Logits forward(std::span<const Token> tokens, Cache& c) const {
    if (c.n + tokens.size() > c.cap) throw CapacityError("ShiftModel: full");
    Logits l(tokens.size(), 16);
    for (std::size_t i = 0; i < tokens.size(); ++i)
      for (std::size_t j = 0; j < 16; ++j)
        l.row(i)[j] = float((static_cast<std::size_t>(tokens[i]) + 3 + j * 7) % 16);
    c.n += tokens.size();
    return l;
  }
};

const std::vector<Token> kPrompt{3, 1, 4, 1, 5};

}  // namespace

TEST_CASE("AnyModel forwards the wrapped model and its caches roll back", "[any_model]") {
  const FnModel m = toy::hash_model(16, 1);
  const AnyModel any = AnyModel::borrow(m);
  REQUIRE(any.vocab_size() == 16);
  REQUIRE(any.get_if<FnModel>() == &m);
  REQUIRE(any.get_if<ShiftModel>() == nullptr);

  AnyModel::Cache c = any.make_cache(10);
  REQUIRE(c.size() == 0);
  REQUIRE(c.capacity() == 10);
  ToyCache ref = m.make_cache(10);
  const Logits a = any.forward(kPrompt, c);
  const Logits b = m.forward(kPrompt, ref);
  REQUIRE(a.rows() == 5);
  REQUIRE(std::equal(a.data(), a.data() + a.rows() * a.cols(), b.data()));
  REQUIRE(c.size() == 5);
  REQUIRE(c.get<ToyCache>().tokens == kPrompt);

  c.truncate(2);
  REQUIRE(c.size() == 2);
  REQUIRE_THROWS_AS(c.truncate(3), InvalidArgument);
  REQUIRE(c.size() == 2);
  AnyModel::Cache copy = c.clone();
  const std::vector<Token> more{7};
  any.forward(more, copy);
  REQUIRE(copy.size() == 3);
  REQUIRE(c.size() == 2);  // a deep copy
  REQUIRE_THROWS_AS(c.get<ShiftModel::Cache>(), InvalidArgument);

  // Backend errors pass through and leave the cache unchanged.
  const std::vector<Token> bad{99};
  REQUIRE_THROWS_AS(any.forward(bad, c), InvalidArgument);
  REQUIRE(c.size() == 2);
  const std::vector<Token> many(20, 1);
  REQUIRE_THROWS_AS(any.forward(many, c), CapacityError);
}

TEST_CASE("AnyModel rejects caches made by another model", "[any_model]") {
  const AnyModel a(toy::hash_model(16, 1));
  const AnyModel b(ShiftModel{});
  const AnyModel a_copy = a;  // copies share the model, and its caches
  AnyModel::Cache ca = a.make_cache(8);
  AnyModel::Cache cb = b.make_cache(8);
  REQUIRE_THROWS_WITH(a.forward(kPrompt, cb), Catch::Contains("not made by this model"));
  REQUIRE_NOTHROW(a_copy.forward(kPrompt, ca));
  AnyModel::Cache empty;
  REQUIRE(empty.size() == 0);
  REQUIRE_NOTHROW(empty.truncate(0));
  REQUIRE_THROWS_AS(empty.truncate(1), InvalidArgument);
  REQUIRE_THROWS_AS(b.forward(kPrompt, empty), InvalidArgument);
  REQUIRE_THROWS_AS(AnyModel(std::shared_ptr<const ShiftModel>()), InvalidArgument);
  REQUIRE_THROWS_AS(b.make_cache(4).clone(),
                    UnsupportedError);  // ShiftModel's cache has no clone()
}

TEST_CASE("decoders over AnyModel match the concrete types, backends picked at run time",
          "[any_model]") {
  const FnModel target = toy::hash_model(16, 1);
  const FnModel draft = toy::partial_model(16, 1, 2, 60);
  for (bool sample : {false, true}) {
    GenerationConfig cfg{.max_new_tokens = 30,
                         .num_assistant_tokens = 4,
                         .schedule = DraftLengthSchedule::heuristic_transient,
                         .do_sample = sample,
                         .temperature = 1.3f,
                         .seed = 5};
    SpeculativeDecoder typed(draft, target, cfg);
    const auto expected = typed.generate(kPrompt);

    // The choice of draft happens at run time.
    std::vector<AnyModel> drafts;
    drafts.push_back(AnyModel::borrow(draft));
    drafts.push_back(AnyModel(ShiftModel{}));
    const AnyModel any_target = AnyModel::borrow(target);
    SpeculativeDecoder erased(drafts[0], any_target, cfg);
    static_assert(std::is_same_v<decltype(erased), SpeculativeDecoder<AnyModel, AnyModel>>);
    const auto got = erased.generate(kPrompt);
    REQUIRE(got.tokens == expected.tokens);
    REQUIRE(got.stats.drafted == expected.stats.drafted);
    REQUIRE(got.stats.accepted == expected.stats.accepted);

    SpeculativeDecoder other(drafts[1], any_target, cfg);
    const auto r = other.generate(kPrompt);
    if (!sample) REQUIRE(r.tokens == generate_autoregressive(target, kPrompt, cfg).tokens);
    REQUIRE(r.tokens.size() == 30);

    // Mixed: concrete draft, erased target.
    SpeculativeDecoder mixed(draft, any_target, cfg);
    REQUIRE(mixed.generate(kPrompt).tokens == expected.tokens);
    REQUIRE(generate_autoregressive(any_target, kPrompt, cfg).tokens ==
            generate_autoregressive(target, kPrompt, cfg).tokens);
  }
}
