// Chat on the demo models (models/kjv-target, models/kjv-draft) with the test
// template tests/data/templates/demo_chat.jinja: ChatSession keeps the KV
// caches between turns and feeds a new turn only the tokens its caches lack
// (counted by a backend wrapper around the real models), its replies equal
// Model::chat on the whole conversation (plain, draft-assisted, prompt
// lookup); stop strings cut the text across token boundaries and inside an
// accepted drafted block, and never reach the streamed text.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <memory>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "assistgen/assistgen.hpp"
#include "integration/text_fixtures.hpp"

using namespace assistgen;
namespace fs = std::filesystem;

namespace {

const fs::path kModels = ASSISTGEN_MODELS_DIR;
const fs::path kTemplate = fs::path(ASSISTGEN_TEST_DATA_DIR) / "templates" / "demo_chat.jinja";

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE(in.good());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A backend that counts the tokens of every forward call of the model it wraps.
struct Counting {
  using Cache = AnyModel::Cache;
  AnyModel inner;
  std::shared_ptr<std::vector<std::size_t>> calls;
  std::size_t vocab_size() const { return inner.vocab_size(); }
  PositionLimits position_limits() const { return inner.position_limits(); }
  Cache make_cache(std::size_t capacity) const { return inner.make_cache(capacity); }
  Logits forward(std::span<const Token> tokens, Cache& cache) const {
    calls->push_back(tokens.size());
    return inner.forward(tokens, cache);
  }
};

std::size_t fed(const std::vector<std::size_t>& calls) {
  return std::accumulate(calls.begin(), calls.end(), std::size_t{0});
}

struct Demo {
  Model target, draft;  // the demo models, counting their forward calls
  std::shared_ptr<std::vector<std::size_t>> target_calls =
      std::make_shared<std::vector<std::size_t>>();
  std::shared_ptr<std::vector<std::size_t>> draft_calls =
      std::make_shared<std::vector<std::size_t>>();
  void clear() {
    target_calls->clear();
    draft_calls->clear();
  }
};

Model counting(const Model& m, std::shared_ptr<std::vector<std::size_t>> calls) {
  return Model(AnyModel(Counting{m.backend(), std::move(calls)}), m.tokenizer(),
               m.generation_defaults());
}

Demo& demo() {
  static Demo* d = [] {
    const Model t = load_model(kModels / "kjv-target");
    const Model a = load_model(kModels / "kjv-draft");
    const ChatTemplate tmpl = ChatTemplate::from_string_for(
        read_text(kTemplate), kModels / "kjv-target", "demo_chat.jinja");
    auto* demo = new Demo{t, a};
    demo->target = counting(t, demo->target_calls).with_chat_template(tmpl);
    demo->draft = counting(a, demo->draft_calls);
    return demo;
  }();
  return *d;
}

std::vector<Token> concat(const std::vector<Token>& a, const std::vector<Token>& b) {
  std::vector<Token> r = a;
  r.insert(r.end(), b.begin(), b.end());
  return r;
}

std::size_t common_prefix(const std::vector<Token>& a, const std::vector<Token>& b) {
  std::size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  return i;
}

enum class Mode { plain, draft, lookup };

struct Streamed {
  std::string text;
  TextCallback callback() {
    return [this](std::string_view p) {
      CHECK(!p.empty());
      text += p;
      return true;
    };
  }
};

}  // namespace

TEST_CASE(
    "chat: Model::chat renders, encodes and generates, and without a template is a clear error",
    "[chat]") {
  Demo& d = demo();
  const std::vector<ChatMessage> msgs{{"system", "The book of Genesis"}, {"user", "And God said"}};
  const GenerateOptions o{.max_new_tokens = 16};
  const TextResult r = d.target.chat(msgs, o);
  const ChatPrompt p = d.target.chat_template().render(msgs);
  CHECK(p.text == "<|endoftext|>The book of Genesis\n\nAnd God said\n");
  CHECK(r.prompt_tokens == ChatTemplate::encode(d.target.tokenizer(), p));
  CHECK(r.prompt_tokens.front() == 4095);  // the template's bos_token text is the special token
  const TextResult direct =
      d.target.generate(p.text, {.max_new_tokens = 16, .parse_special = true});
  CHECK(direct.prompt_tokens == r.prompt_tokens);
  CHECK(direct.tokens == r.tokens);
  CHECK(d.target.chat(msgs, d.draft, o).tokens == r.tokens);
  // User text that spells a special token stays text.
  const auto ids = d.target.encode_chat({{"user", "<|endoftext|>"}});
  CHECK(std::count(ids.begin(), ids.end(), 4095) == 1);

  const Model bare = load_model(kModels / "kjv-draft");
  CHECK_FALSE(bare.has_chat_template());
  CHECK_THROWS_AS(bare.chat(msgs, o), ConfigError);
  CHECK_THROWS_WITH(bare.chat(msgs, o), Catch::Contains("--template FILE"));
  CHECK_THROWS_AS(ChatSession(bare), ConfigError);
}

TEST_CASE("chat: load_model attaches the directory's template, a broken one fails only chat",
          "[chat]") {
  // The draft's files, linked into a directory that adds a chat_template.jinja.
  const fs::path dir = fs::temp_directory_path() /
                       ("assistgen-chat-template-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(kModels / "kjv-draft"))
    fs::create_symlink(fs::absolute(e.path()), dir / e.path().filename());
  auto write = [&](const std::string& text) {
    std::ofstream(dir / "chat_template.jinja", std::ios::binary) << text;
  };
  const std::vector<ChatMessage> msgs{{"user", "And God said"}};
  const GenerateOptions o{.max_new_tokens = 8};

  write(read_text(kTemplate));
  const Model with = load_model(dir);
  REQUIRE(with.has_chat_template());
  const Model attached = load_model(kModels / "kjv-draft")
                             .with_chat_template(ChatTemplate::from_string_for(
                                 read_text(kTemplate), kModels / "kjv-draft", "demo_chat.jinja"));
  CHECK(with.encode_chat(msgs) == attached.encode_chat(msgs));
  CHECK(with.chat(msgs, o).tokens == attached.chat(msgs, o).tokens);

  write("{% for m in messages %}{{ m.content }");  // unterminated expression
  const Model broken = load_model(dir);
  CHECK_FALSE(broken.has_chat_template());
  CHECK(broken.generate("And God said", o).tokens == with.generate("And God said", o).tokens);
  CHECK_THROWS_AS(broken.chat(msgs, o), ConfigError);
  CHECK_THROWS_WITH(broken.chat(msgs, o), Catch::Contains("chat_template.jinja") &&
                                              Catch::Contains("did not load"));
  // A template given explicitly replaces the broken one.
  CHECK(broken.with_chat_template(attached.chat_template()).chat(msgs, o).tokens ==
        attached.chat(msgs, o).tokens);
  fs::remove_all(dir);
}

TEST_CASE("chat: a session's next turn prefills only the new tokens and replies as a fresh chat",
          "[chat]") {
  Demo& d = demo();
  const Mode mode = GENERATE(Mode::plain, Mode::draft, Mode::lookup);
  const bool with_stop = GENERATE(false, true);
  INFO("mode " << int(mode) << (with_stop ? " with stop strings" : ""));
  GenerateOptions o{.max_new_tokens = 24};
  if (mode == Mode::lookup) o.prompt_lookup_num_tokens = 3;
  if (with_stop) o.stop = std::vector<std::string>{"LORD", ", and"};
  const ChatSessionOptions so{.generate = o, .system = "The book of Genesis"};
  ChatSession s =
      mode == Mode::draft ? ChatSession(d.target, d.draft, so) : ChatSession(d.target, so);
  CHECK(s.context() == 512);  // the demo's max_position_embeddings

  auto fresh = [&](const std::vector<ChatMessage>& msgs) {
    return mode == Mode::draft ? d.target.chat(msgs, d.draft, o) : d.target.chat(msgs, o);
  };
  const std::vector<std::string> turns{"And God said", "And the LORD spake unto Moses, saying",
                                       "In the beginning"};
  std::vector<Token> previous;  // prompt + reply of the last turn: what the caches hold
  for (std::size_t turn = 0; turn < turns.size(); ++turn) {
    INFO("turn " << turn);
    // The reference first: the whole conversation from empty caches.
    std::vector<ChatMessage> msgs = s.messages();
    msgs.push_back({"user", turns[turn]});
    d.clear();
    const TextResult ref = fresh(msgs);
    const std::size_t ref_target = fed(*d.target_calls), ref_draft = fed(*d.draft_calls);

    d.clear();
    Streamed streamed;
    const TextResult r = s.send(turns[turn], streamed.callback());
    CHECK(streamed.text == r.text);
    CHECK(r.prompt_tokens == ref.prompt_tokens);
    CHECK(r.tokens == ref.tokens);
    CHECK(r.text == ref.text);
    CHECK(r.stop_reason == ref.stop_reason);
    // The target's cache held previous minus its newest token; the new
    // prompt keeps what it shares with that, less its own last token.
    const std::size_t P = r.prompt_tokens.size();
    const std::size_t keep =
        previous.empty()
            ? 0
            : std::min({common_prefix(previous, r.prompt_tokens), previous.size() - 1, P - 1});
    CHECK(r.stats.reused_tokens == keep);
    CHECK(fed(*d.target_calls) == ref_target - keep);
    if (mode == Mode::plain) CHECK(fed(*d.target_calls) == P - keep + r.tokens.size() - 1);
    if (turn > 0) {
      // Everything of the last turn is reused, its reply included: only the
      // new user message (and the reply's end-of-turn text) is prefilled.
      CHECK(keep + 3 >= previous.size());
      CHECK(P - keep < 24);
    }
    if (mode == Mode::draft) {
      // The draft's cache keeps up to two positions fewer than the target's.
      CHECK(fed(*d.draft_calls) <= ref_draft - (keep >= 3 ? keep - 3 : 0));
      CHECK((fed(*d.draft_calls) < ref_draft || turn == 0));
    } else {
      CHECK(d.draft_calls->empty());
    }
    previous = concat(r.prompt_tokens, r.tokens);
  }
  // The conversation holds the replies as text, stop strings cut off.
  REQUIRE(s.messages().size() == 7);
  CHECK(s.messages()[0].role == "system");
  CHECK(s.messages()[6].role == "assistant");
  CHECK(s.messages()[6].content == s.last()->text);
  if (with_stop) {
    CHECK(s.last()->stop_reason == StopReason::stop_string);
    for (const auto& m : s.messages())
      if (m.role == "assistant") CHECK(m.content.find("LORD") == std::string::npos);
  }

  // reset() keeps the caches: the next turn reuses the system prefix.
  s.reset();
  REQUIRE(s.messages().size() == 1);
  d.clear();
  const TextResult r = s.send(turns[0]);
  const std::size_t keep = std::min(
      {common_prefix(previous, r.prompt_tokens), previous.size() - 1, r.prompt_tokens.size() - 1});
  CHECK(keep > 4);
  CHECK(r.stats.reused_tokens == keep);
  CHECK(r.tokens == fresh({{"system", "The book of Genesis"}, {"user", turns[0]}}).tokens);
}

TEST_CASE("chat: a conversation longer than the context is a CapacityError and changes nothing",
          "[chat]") {
  Demo& d = demo();
  ChatSession s(d.target, {.generate = {.max_new_tokens = 8}, .context = 40});
  CHECK(s.context() == 40);
  s.send("And God said");
  const auto before = s.messages();
  CHECK_THROWS_AS(s.send(std::string(200, 'a')), CapacityError);
  CHECK_THROWS_WITH(s.send(std::string(200, 'a')), Catch::Contains("reset()"));
  REQUIRE(s.messages().size() == before.size());
  CHECK(s.messages().back().content == before.back().content);
  // A reply that reaches the context stops there.
  s.reset();
  const TextResult r = s.send("And the LORD spake unto Moses, saying, Speak unto the children");
  CHECK(r.prompt_tokens.size() + r.tokens.size() <= 41);
}

TEST_CASE("chat: a stop string inside an accepted drafted block cuts the output there",
          "[chat][stop]") {
  Demo& d = demo();
  const std::string prompt = "And God said";
  const GenerateOptions o{.max_new_tokens = 48};
  const TextResult plain = d.target.generate(prompt, o);
  REQUIRE(plain.tokens.size() == 48);
  const std::size_t P = plain.prompt_tokens.size();

  // The rounds of the assisted run, from the decoder itself.
  GenerationConfig cfg = d.target.generation_config(o, P);
  cfg.suppress_tokens.insert(cfg.suppress_tokens.end(), d.target.masked_tokens().begin(),
                             d.target.masked_tokens().end());
  struct Block {
    std::size_t start, emitted, accepted;
  };
  std::vector<Block> blocks;
  SpeculativeDecoder<AnyModel, AnyModel> decoder(d.draft.backend(), d.target.backend(), cfg);
  decoder.set_round_observer([&](const auto& info) {
    blocks.push_back(
        {info.sequence.size() - info.emitted.size() - P, info.emitted.size(), info.accepted});
  });
  REQUIRE(decoder.generate(plain.prompt_tokens).tokens == plain.tokens);

  // A token j drafted and accepted, not the last of its block, whose text
  // ends the first occurrence of a string that starts in an earlier token.
  const Tokenizer& tok = d.target.tokenizer();
  auto text_upto = [&](std::size_t n) {
    return tok.decode(std::span<const Token>(plain.tokens).first(n), true);
  };
  std::optional<std::size_t> j;
  std::string stop, full;
  for (const Block& b : blocks) {
    for (std::size_t i = b.start + 1; i < b.start + b.accepted && !j; ++i) {
      const std::string prev = text_upto(i);
      full = text_upto(i + 1);
      if (full.size() < prev.size() + 2 || prev.size() < 2) continue;
      stop = full.substr(prev.size() - 2);
      if (full.find(stop) + stop.size() == full.size()) j = i;
    }
    if (j) break;
  }
  REQUIRE(j);
  INFO("stop string '" << stop << "' completed by token " << *j);

  const GenerateOptions with_stop{.max_new_tokens = 48,
                                  .stop = std::vector<std::string>{stop, "no such text"}};
  const std::vector<Token> expected(plain.tokens.begin(), plain.tokens.begin() + *j + 1);
  const std::string expected_text = full.substr(0, full.size() - stop.size());
  CHECK(plain.text.substr(0, expected_text.size()) == expected_text);
  CHECK(plain.text.find(stop) == expected_text.size());
  for (const Mode mode : {Mode::plain, Mode::draft, Mode::lookup}) {
    INFO("mode " << int(mode));
    GenerateOptions go = with_stop;
    if (mode == Mode::lookup) go.prompt_lookup_num_tokens = 4;
    Streamed s;
    const TextResult r = mode == Mode::draft ? d.target.generate(prompt, d.draft, go, s.callback())
                                             : d.target.generate(prompt, go, s.callback());
    CHECK(r.stop_reason == StopReason::stop_string);
    CHECK(r.tokens == expected);
    CHECK(r.text == expected_text);
    CHECK(s.text == expected_text);
  }

  // In the decoder, the stop (a callback refusing token j) cuts the round's
  // block after token j and both caches as an EOS does.
  bool cut = false;
  decoder.set_round_observer([&](const auto& info) {
    const std::size_t start = info.sequence.size() - info.emitted.size() - P;
    if (start + info.emitted.size() == *j + 1) {
      cut = true;
      const auto it = std::find_if(blocks.begin(), blocks.end(),
                                   [&](const Block& b) { return b.start == start; });
      REQUIRE(it != blocks.end());
      CHECK(it->emitted > info.emitted.size());  // the unstopped round emitted more
      CHECK(info.target_cache->size() == info.sequence.size() - 1);
      CHECK(info.draft_cache->size() <= info.sequence.size() - 1);
    }
  });
  std::size_t seen = 0;
  const GenerationResult g =
      decoder.generate(plain.prompt_tokens, [&](Token) { return ++seen <= *j; });
  CHECK(cut);
  CHECK(g.tokens == expected);
}

TEST_CASE("chat: stop strings across token boundaries, held back while streaming", "[chat][stop]") {
  Demo& d = demo();
  const std::string prompt = "In the beginning";
  const TextResult plain = d.target.generate(prompt, {.max_new_tokens = 40});
  const std::string& text = plain.text;
  REQUIRE(text.size() > 60);
  auto run = [&](std::vector<std::string> stops, bool assisted) {
    Streamed s;
    const GenerateOptions o{.max_new_tokens = 40, .stop = std::move(stops)};
    TextResult r = assisted ? d.target.generate(prompt, d.draft, o, s.callback())
                            : d.target.generate(prompt, o, s.callback());
    CHECK(s.text == r.text);
    return r;
  };
  for (const bool assisted : {false, true}) {
    INFO((assisted ? "assisted" : "plain"));
    // Never met: everything, the held-back tail included, is streamed.
    const std::string tail_prefix = text.substr(text.size() - 3) + "\x01";
    TextResult r = run({tail_prefix, "zzz"}, assisted);
    CHECK(r.text == text);
    CHECK(r.tokens == plain.tokens);
    CHECK(r.stop_reason == StopReason::max_new_tokens);
    // Several: the one whose end comes first wins, wherever token boundaries are.
    for (std::size_t at : {5u, 17u, 30u}) {
      const std::string a = text.substr(at, 7), b = text.substr(at + 3, 8);
      const std::size_t end = std::min(text.find(a) + a.size(), text.find(b) + b.size());
      const std::size_t cut = text.find(a) + a.size() == end ? text.find(a) : text.find(b);
      r = run({b, a}, assisted);
      CHECK(r.stop_reason == StopReason::stop_string);
      CHECK(r.text == text.substr(0, cut));
      // The tokens end with the one completing the stop string.
      const std::string with = d.target.tokenizer().decode(r.tokens, true);
      CHECK(with.size() >= end);
      const std::string without = d.target.tokenizer().decode(
          std::span<const Token>(r.tokens).first(r.tokens.size() - 1), true);
      CHECK(without.size() < end);
    }
  }
}

TEST_CASE("chat: stop strings are checked, and read from generation_config.json", "[chat][stop]") {
  Demo& d = demo();
  CHECK_THROWS_AS(d.target.generate("x", {.stop = std::vector<std::string>{""}}), InvalidArgument);
  CHECK_THROWS_WITH(d.target.generate("x", {.stop = std::vector<std::string>{"a", ""}}),
                    Catch::Contains("stop string 1 is empty"));
  CHECK_THROWS_AS(d.target.generate("x", {.stop = std::vector<std::string>(65, "a")}),
                  InvalidArgument);
  CHECK_THROWS_AS(
      d.target.generate("x", {.stop = std::vector<std::string>{std::string(1025, 'a')}}),
      InvalidArgument);
  CHECK(GenerateOptions::parse_generation_config(R"({"stop_strings": "\n\n"})").stop ==
        std::vector<std::string>{"\n\n"});
  CHECK(GenerateOptions::parse_generation_config(R"({"stop_strings": ["a", "bc"]})").stop ==
        std::vector<std::string>{"a", "bc"});
  CHECK_THROWS_AS(GenerateOptions::parse_generation_config(R"({"stop_strings": [1]})"),
                  ConfigError);
  CHECK_THROWS_WITH(GenerateOptions::parse_generation_config(R"({"stop_strings": [""]})"),
                    Catch::Contains("stop_strings"));
  // Model defaults apply, and a call's own stop replaces them.
  const TextResult plain = d.target.generate("And God said", {.max_new_tokens = 30});
  const std::string stop = plain.text.substr(10, 4);
  GenerateOptions defaults = d.target.generation_defaults();
  defaults.stop = std::vector<std::string>{stop};
  const Model m(d.target.backend(), d.target.tokenizer(), defaults);
  CHECK(m.generate("And God said", {.max_new_tokens = 30}).text ==
        plain.text.substr(0, plain.text.find(stop)));
  CHECK(m.generate("And God said", {.max_new_tokens = 30, .stop = std::vector<std::string>{"\x01"}})
            .text == plain.text);
}

TEST_CASE("chat: a session with a draft of another tokenizer reuses the target's cache", "[chat]") {
  // Universal assisted generation: the target's cache keeps its prefix, the
  // draft's (another tokenization) is refilled every turn.
  auto calls = std::make_shared<std::vector<std::size_t>>();
  const fs::path tdir = text_fixtures::make_model_dir("chat-t", "llama-gqa", "char");
  const Model target = counting(load_model(tdir), calls)
                           .with_chat_template(ChatTemplate::from_string_for(
                               read_text(kTemplate), tdir, "demo_chat.jinja"));
  const Model draft =
      load_model(text_fixtures::make_model_dir("chat-d", "llama-gqa-noisy", "merged"));
  REQUIRE_FALSE(target.same_vocabulary(draft));
  const GenerateOptions o{.max_new_tokens = 12};
  ChatSession s(target, draft, {.generate = o, .system = "Be brief."});
  std::vector<Token> previous;
  for (const std::string user : {"Hello there", "And the rest of it", "Once more"}) {
    INFO(user);
    std::vector<ChatMessage> msgs = s.messages();
    msgs.push_back({"user", user});
    calls->clear();
    const TextResult ref = target.chat(msgs, draft, o);
    const std::size_t ref_fed = fed(*calls);
    calls->clear();
    const TextResult r = s.send(user);
    CHECK(r.assistance == Assistance::universal);
    CHECK(r.tokens == ref.tokens);
    CHECK(r.text == ref.text);
    const std::size_t keep = previous.empty()
                                 ? 0
                                 : std::min({common_prefix(previous, r.prompt_tokens),
                                             previous.size() - 1, r.prompt_tokens.size() - 1});
    if (!previous.empty()) CHECK(keep > 10);
    CHECK(r.stats.reused_tokens == keep);
    CHECK(fed(*calls) == ref_fed - keep);
    CHECK(r.tokens == target.chat(msgs, o).tokens);  // the target's own greedy reply
    previous = concat(r.prompt_tokens, r.tokens);
  }
}

TEST_CASE("chat: sampled replies of a session equal fresh sampled chats with the same seed",
          "[chat]") {
  Demo& d = demo();
  const GenerateOptions o{.max_new_tokens = 20, .do_sample = true, .temperature = 0.9f, .seed = 7};
  ChatSession s(d.target, d.draft, {.generate = o});
  for (const std::string user : {"And God said", "And Moses said unto the LORD"}) {
    std::vector<ChatMessage> msgs = s.messages();
    msgs.push_back({"user", user});
    const TextResult ref = d.target.chat(msgs, d.draft, o);
    const TextResult r = s.send(user);
    CHECK(r.tokens == ref.tokens);
    CHECK(r.text == ref.text);
  }
  CHECK(s.last()->stats.reused_tokens > 10);
}
