// Assisted generation with a draft of ANOTHER tokenizer (UniversalDecoder,
// HF's universal assisted generation): the alignment search, the output
// being the target's plain greedy output for several prompts, K values and
// schedules in both directions (char-level target / merged draft and the
// reverse), stopping rules, statistics, and the errors.
#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "assistgen/assistgen.hpp"
#include "integration/text_fixtures.hpp"

using namespace assistgen;
using text_fixtures::make_model_dir;

namespace {

const std::vector<std::string> kPrompts = {"And God said", "In the beginning", "Hello, world!\nA",
                                           "q"};

std::vector<Token> v(std::initializer_list<Token> l) { return l; }

std::string read(const std::filesystem::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A model that is `inner` with its vocabulary relabelled: id i of this model
// is id perm[i] of `inner` (inputs mapped, logit columns gathered). Paired
// with a tokenizer relabelled the same way it is the same draft, seen
// through a different vocabulary.
class Relabelled {
 public:
  using Cache = AnyModel::Cache;
  Relabelled(AnyModel inner, std::vector<Token> perm)
      : inner_(std::move(inner)), perm_(std::move(perm)) {}
  std::size_t vocab_size() const { return inner_.vocab_size(); }
  Cache make_cache(std::size_t capacity) const { return inner_.make_cache(capacity); }
  Logits forward(std::span<const Token> tokens, Cache& cache) const {
    std::vector<Token> mapped(tokens.size());
    for (std::size_t i = 0; i < tokens.size(); ++i)
      mapped[i] = perm_.at(static_cast<std::size_t>(tokens[i]));
    const Logits in = inner_.forward(mapped, cache);
    Logits out(in.rows(), in.cols());
    for (std::size_t r = 0; r < in.rows(); ++r)
      for (std::size_t c = 0; c < in.cols(); ++c)
        out.row(r)[c] = in.row(r)[static_cast<std::size_t>(perm_[c])];
    return out;
  }

 private:
  AnyModel inner_;
  std::vector<Token> perm_;
};

}  // namespace

TEST_CASE("universal: align_tokens finds the longest diagonal run as HF does", "[universal]") {
  // Exact overlap.
  auto a = align_tokens(v({5, 6, 7}), v({5, 6, 7, 8, 9}));
  CHECK(a.found);
  CHECK(a.window == 0);
  CHECK(a.tail == 0);
  CHECK(a.length == 3);
  // The window starts later in the tail.
  a = align_tokens(v({1, 2, 3, 4}), v({3, 4, 10, 11}));
  CHECK((a.found && a.window == 0 && a.tail == 2 && a.length == 2));
  // The longest run wins over an earlier, shorter one.
  a = align_tokens(v({9, 1, 2, 3}), v({9, 7, 1, 2, 3, 4}));
  CHECK((a.window == 2 && a.tail == 1 && a.length == 3));
  // Ties: the first start in window-major order.
  a = align_tokens(v({4, 4}), v({4}));
  CHECK((a.window == 0 && a.tail == 0 && a.length == 1));
  // No common token.
  CHECK(!align_tokens(v({1, 2}), v({3, 4})).found);
  CHECK(!align_tokens(v({}), v({3, 4})).found);
}

TEST_CASE("universal: a draft with another tokenizer gives the target's plain greedy output",
          "[universal]") {
  struct Pair {
    const char* target_model;
    const char* target_tok;
    const char* draft_model;
    const char* draft_tok;
  };
  const Pair pairs[] = {
      {"llama-gqa", "char", "llama-gqa-noisy", "merged"},
      {"llama-gqa", "merged", "llama-gqa-noisy", "char"},
      {"llama-gqa", "char", "llama-draft", "merged"},
      {"qwen2-bias", "merged", "llama-draft", "char"},
  };
  for (const Pair& p : pairs) {
    const Model target = load_model(make_model_dir("t", p.target_model, p.target_tok));
    const Model draft = load_model(make_model_dir("d", p.draft_model, p.draft_tok));
    REQUIRE(!target.same_vocabulary(draft));
    for (const auto& prompt : kPrompts) {
      const TextResult plain = target.generate(prompt, {.max_new_tokens = 24});
      for (std::size_t k : {1u, 3u, 6u})
        for (DraftLengthSchedule s : {DraftLengthSchedule::constant, DraftLengthSchedule::heuristic, DraftLengthSchedule::confidence}) {
          INFO(p.target_model << "+" << p.target_tok << " <- " << p.draft_model << "+"
                              << p.draft_tok << " '" << prompt << "' k=" << k
                              << " schedule=" << int(s));
          std::string streamed;
          const TextResult r = target.generate(
              prompt, draft, {.max_new_tokens = 24, .num_assistant_tokens = k, .schedule = s},
              [&](std::string_view piece) {
                streamed += piece;
                return true;
              });
          CHECK(r.assistance == Assistance::universal);
          CHECK(r.tokens == plain.tokens);
          CHECK(r.text == plain.text);
          CHECK(streamed == r.text);
          CHECK(r.stop_reason == plain.stop_reason);
          const GenerationStats& st = r.stats;
          CHECK(st.new_tokens == r.tokens.size());
          CHECK(st.accepted <= st.drafted);
          CHECK(st.rounds == st.target_calls);
          CHECK(st.new_tokens <= st.accepted + st.rounds);
          CHECK(st.draft_calls > 0);
          CHECK(st.target_calls <= plain.stats.target_calls);
        }
    }
  }
}

TEST_CASE("universal: identical tokenization through the universal path accepts everything",
          "[universal]") {
  // The target as its own draft, each with the char tokenizer, but forced
  // through UniversalDecoder: every re-encoding is the identity, so all
  // candidates must be accepted. This pins the alignment bookkeeping.
  const Model m = load_model(make_model_dir("self", "llama-gqa", "char"));
  for (const auto& prompt : kPrompts) {
    const std::vector<Token> ids = m.encode_prompt(prompt);
    GenerationConfig cfg =
        m.generation_config({.max_new_tokens = 30, .num_assistant_tokens = 4}, ids.size());
    cfg.suppress_tokens.assign(m.masked_tokens().begin(), m.masked_tokens().end());
    cfg.eos_token_ids.clear();
    const auto plain = generate_autoregressive(m.backend(), ids, cfg).tokens;
    UniversalDecoder<AnyModel, AnyModel> dec(m.backend(), m.tokenizer(), m.backend(), m.tokenizer(),
                                             cfg, {.draft_suppress_tokens = cfg.suppress_tokens});
    const GenerationResult r = dec.generate(ids);
    INFO(prompt);
    CHECK(r.tokens == plain);
    CHECK(r.stats.drafted > 0);
    CHECK(r.stats.accepted == r.stats.drafted);
    CHECK(r.stats.target_calls < plain.size() / 3);
    // The draft sequence is the target's, re-encoded: the same ids here
    // (plus the last round's proposal beyond it).
    const auto d = dec.draft_sequence();
    REQUIRE(d.size() >= ids.size() + plain.size() - 1);
    CHECK(std::equal(ids.begin(), ids.end(), d.begin()));
  }
}

TEST_CASE("universal: a relabelled copy of a draft is as good a draft through re-tokenization",
          "[universal]") {
  // The char tokenizer with the ids of its 97 characters shuffled: the same
  // strings, another vocabulary, so the universal path is taken. The draft
  // model is llama-gqa-noisy relabelled the same way, so it proposes exactly
  // what the noisy draft proposes through the direct path.
  const auto dir = make_model_dir("rl-t", "llama-gqa", "char");
  const Model target = load_model(dir);
  const Model noisy = load_model(make_model_dir("rl-d", "llama-gqa-noisy", "char"));
  nlohmann::json tj = nlohmann::json::parse(read(dir / "tokenizer.json"));
  std::vector<Token> order(97);
  std::iota(order.begin(), order.end(), 3);
  std::mt19937 rng(42);
  for (std::size_t i = order.size() - 1; i > 0; --i) std::swap(order[i], order[rng() % (i + 1)]);
  std::vector<Token> perm(256);
  std::iota(perm.begin(), perm.end(), 0);  // specials and rows past the tokenizer: unchanged
  nlohmann::json vocab = nlohmann::json::object();
  for (const auto& [tok, id] : tj["model"]["vocab"].items()) {
    const Token old_id = id.get<Token>();
    const Token new_id = old_id < 3 ? old_id : order[static_cast<std::size_t>(old_id - 3)];
    vocab[tok] = new_id;
    perm[static_cast<std::size_t>(new_id)] = old_id;
  }
  tj["model"]["vocab"] = vocab;
  const Tokenizer shuffled = Tokenizer::from_json(tj.dump(), read(dir / "tokenizer_config.json"));
  const Model relabelled(AnyModel(Relabelled(noisy.backend(), perm)), shuffled,
                         noisy.generation_defaults());
  REQUIRE(!target.same_vocabulary(relabelled));
  double direct_rate = 0, universal_rate = 0;
  for (const auto& prompt : kPrompts)
    for (std::size_t k : {2u, 5u}) {
      INFO(prompt << " k=" << k);
      const GenerateOptions o{.max_new_tokens = 32, .num_assistant_tokens = k};
      const TextResult direct = target.generate(prompt, noisy, o);
      const TextResult universal = target.generate(prompt, relabelled, o);
      CHECK(direct.assistance == Assistance::draft);
      CHECK(universal.assistance == Assistance::universal);
      CHECK(universal.tokens == direct.tokens);
      // The same proposals, verified the same way: identical counts.
      CHECK(universal.stats.drafted == direct.stats.drafted);
      CHECK(universal.stats.accepted == direct.stats.accepted);
      CHECK(universal.stats.target_calls == direct.stats.target_calls);
      direct_rate += direct.stats.acceptance_rate();
      universal_rate += universal.stats.acceptance_rate();
    }
  CHECK(direct_rate > 0.0);
  CHECK(universal_rate == Approx(direct_rate));
}

TEST_CASE("universal: EOS, budget and capacity stop exactly where plain decoding stops",
          "[universal]") {
  const Model target = load_model(make_model_dir("te", "llama-gqa", "char"));
  const Model draft = load_model(make_model_dir("de", "llama-gqa-noisy", "merged"));
  const TextResult plain = target.generate("And God said", {.max_new_tokens = 20});
  REQUIRE(plain.tokens.size() == 20);
  // Make the 9th generated token an EOS id.
  const Token stop = plain.tokens[8];
  std::size_t first = 0;
  while (plain.tokens[first] != stop) ++first;
  const GenerateOptions eos{.max_new_tokens = 20, .eos_token_id = std::vector<Token>{stop}};
  const TextResult plain_eos = target.generate("And God said", eos);
  CHECK(plain_eos.tokens.size() == first + 1);
  CHECK(plain_eos.stop_reason == StopReason::eos);
  for (std::size_t k : {1u, 5u}) {
    GenerateOptions o = eos;
    o.num_assistant_tokens = k;
    const TextResult r = target.generate("And God said", draft, o);
    CHECK(r.tokens == plain_eos.tokens);
    CHECK(r.stop_reason == StopReason::eos);
  }
  // A small cache: the output stops with `capacity` after the same tokens.
  const std::size_t P = target.encode_prompt("And God said").size();
  const GenerateOptions cap{.max_new_tokens = 20, .cache_capacity = P + 6};
  const TextResult plain_cap = target.generate("And God said", cap);
  const TextResult r = target.generate("And God said", draft, cap);
  CHECK(r.tokens == plain_cap.tokens);
  CHECK(r.stop_reason == StopReason::capacity);
  // A callback stop.
  std::size_t calls = 0;
  const TextResult cb = target.generate("And God said", draft, {.max_new_tokens = 20},
                                        [&](std::string_view) { return ++calls < 4; });
  CHECK(cb.stop_reason == StopReason::callback);
  CHECK(cb.tokens.size() == 4);
  CHECK(std::equal(cb.tokens.begin(), cb.tokens.end(), plain.tokens.begin()));
}

TEST_CASE("universal: prompt lookup and bad lookbehinds are errors naming the option", "[universal]") {
  const Model target = load_model(make_model_dir("tx", "llama-gqa", "char"));
  const Model draft = load_model(make_model_dir("dx", "llama-draft", "merged"));
  CHECK_THROWS_WITH(target.generate("x", draft, {.prompt_lookup_num_tokens = 2}),
                    Catch::Contains("prompt_lookup_num_tokens"));
  using Decoder = UniversalDecoder<AnyModel, AnyModel>;
  auto make = [&] {
    Decoder d(draft.backend(), draft.tokenizer(), target.backend(), target.tokenizer(),
              GenerationConfig{}, {.target_lookbehind = 0});
  };
  CHECK_THROWS_AS(make(), InvalidArgument);
}
