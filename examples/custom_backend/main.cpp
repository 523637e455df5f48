// custom_backend: plugging your own model runtime into assistgen.
//
// NgramModel (ngram_model.hpp) is a backend written outside the library: it
// models assistgen::CausalLM, so the library's SpeculativeDecoder accepts it
// as either side of the pair with no change anywhere:
//
//   1. the backend passes the library's conformance test;
//   2. SpeculativeDecoder<NgramModel, cpu::Transformer>: a trigram model
//      "distilled" from the transformer's own greedy output drafts for it;
//   3. SpeculativeDecoder<cpu::Transformer, NgramModel>: the transformer drafts
//      for the n-gram model as the target.
//
// Each greedy run must equal plain greedy decoding of its target token for
// token (the guarantee of assisted generation); a sampled run must stay in the
// vocabulary and honour max_new_tokens. Prints the statistics of each run and
// exits 1 on any failure.
//
// usage: custom_backend MODEL_DIR     (an HF Llama-family directory, vocab <= 2^20)
#include <assistgen/cpu/transformer.hpp>
#include <assistgen/generation_config.hpp>
#include <assistgen/greedy.hpp>
#include <assistgen/speculative_decoder.hpp>
#include <assistgen/testing/conformance.hpp>

#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "ngram_model.hpp"

namespace {

using assistgen::GenerationConfig;
using assistgen::GenerationResult;
using assistgen::Token;

int failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("  [%s] %s\n", ok ? "ok" : "FAIL", what.c_str());
  if (!ok) ++failures;
}

void print_stats(const char* label, const GenerationResult& r) {
  const auto& s = r.stats;
  std::printf("  %s: %zu tokens, %zu target calls (%.2f tokens/call), %zu rounds, drafted %zu, "
              "accepted %zu (rate %.2f), stop: %s\n",
              label, s.new_tokens, s.target_calls, s.tokens_per_target_call(), s.rounds, s.drafted, s.accepted,
              s.acceptance_rate(), std::string(assistgen::stop_reason_name(r.stop_reason)).c_str());
}

// Runs the assisted decoder and plain greedy decoding of `target` on each
// prompt and checks they agree.
template <class Draft, class Target>
void compare_with_plain_greedy(const char* label, const Draft& draft, const Target& target,
                               const std::vector<std::vector<Token>>& prompts, const GenerationConfig& cfg) {
  assistgen::SpeculativeDecoder<Draft, Target> assisted(draft, target, cfg);
  assistgen::AutoregressiveDecoder<Target> plain(target, cfg);
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    const GenerationResult a = assisted.generate(prompts[i]);
    const GenerationResult p = plain.generate(prompts[i]);
    std::printf(" %s, prompt %zu\n", label, i);
    print_stats("assisted", a);
    print_stats("plain   ", p);
    check(a.tokens == p.tokens, "assisted greedy output == plain greedy output of the target");
    check(a.stats.target_calls <= p.stats.target_calls, "assisted run needs no more target calls than plain");
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]);
    return 2;
  }
  try {
    const auto transformer = assistgen::cpu::Transformer::load(argv[1]);
    const std::size_t vocab = transformer.vocab_size();
    std::printf("loaded %s: vocab %zu\n", argv[1], vocab);

    // Training data for the n-gram model: the transformer's own greedy
    // continuations of a few prompts, so the n-gram model agrees with it often
    // (a useful draft) but not always (rejections and rollbacks happen).
    std::vector<std::vector<Token>> prompts;
    for (Token seed = 0; seed < 6; ++seed)
      prompts.push_back({1, static_cast<Token>((17 + 41 * seed) % vocab), static_cast<Token>((200 + 29 * seed) % vocab)});
    std::vector<std::vector<Token>> corpus;
    assistgen::AutoregressiveDecoder<assistgen::cpu::Transformer> teacher(transformer,
                                                                        GenerationConfig{.max_new_tokens = 48});
    for (const auto& p : prompts) {
      std::vector<Token> seq = p;
      const auto out = teacher.generate(p);
      seq.insert(seq.end(), out.tokens.begin(), out.tokens.end());
      corpus.push_back(std::move(seq));
    }
    const auto trigram = ngram::NgramModel::train(vocab, 3, corpus);
    const auto bigram = ngram::NgramModel::train(vocab, 2, corpus);

    std::printf("1. conformance of NgramModel (order 3)\n");
    const auto report = assistgen::testing::check_backend(trigram);
    std::fputs(report.summary().c_str(), stdout);
    check(report.ok(), "NgramModel passes the backend conformance test");

    // Prompts seen in training (high acceptance) and unseen ones.
    std::vector<std::vector<Token>> test_prompts = {prompts[0], prompts[3], {1, 5, 6, 7}, {1, 99, 100}};

    std::printf("2. SpeculativeDecoder<NgramModel, cpu::Transformer>\n");
    compare_with_plain_greedy("trigram drafts for the transformer", trigram, transformer, test_prompts,
                              GenerationConfig{.max_new_tokens = 32, .num_assistant_tokens = 4});
    compare_with_plain_greedy("trigram drafts, heuristic K", trigram, transformer, {test_prompts[1]},
                              GenerationConfig{.max_new_tokens = 32,
                                               .num_assistant_tokens = 2,
                                               .schedule = assistgen::Schedule::heuristic});

    std::printf("3. SpeculativeDecoder<cpu::Transformer, NgramModel>\n");
    compare_with_plain_greedy("transformer drafts for the bigram model", transformer, bigram, test_prompts,
                              GenerationConfig{.max_new_tokens = 24, .num_assistant_tokens = 3});

    std::printf("4. speculative sampling with the trigram draft\n");
    assistgen::SpeculativeDecoder sampler(trigram, transformer,
                                          GenerationConfig{.max_new_tokens = 24,
                                                           .num_assistant_tokens = 4,
                                                           .do_sample = true,
                                                           .temperature = 0.8f,
                                                           .seed = 7});
    const GenerationResult s1 = sampler.generate(test_prompts[0]);
    const GenerationResult s2 = sampler.generate(test_prompts[0]);
    print_stats("sampled", s1);
    bool in_vocab = true;
    for (Token t : s1.tokens) in_vocab = in_vocab && t >= 0 && static_cast<std::size_t>(t) < vocab;
    check(s1.tokens.size() == 24 && in_vocab, "24 sampled tokens, all in the vocabulary");
    check(s1.tokens == s2.tokens, "the same seed gives the same sample");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "custom_backend: error: %s\n", e.what());
    return 1;
  }
  if (failures) {
    std::printf("%d check(s) FAILED\n", failures);
    return 1;
  }
  std::printf("all checks passed\n");
  return 0;
}
