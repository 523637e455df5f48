// assistgen generate: plain or assisted decoding from token ids.
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "args.hpp"
#include "assistgen/any_model.hpp"
#include "assistgen/cpu/transformer.hpp"
#include "assistgen/greedy.hpp"
#include "assistgen/speculative_decoder.hpp"
#include "commands.hpp"

namespace assistgen::cli {

namespace {

constexpr const char* kHelp = R"(usage: assistgen generate -m TARGET [-a DRAFT] --tokens IDS [-n N] [options]

Continues IDS with the target model, greedily unless --temp/--do-sample asks
for sampling. With -a (a draft model) or --prompt-lookup, decoding is assisted:
the output is exactly the target's own (greedy), or follows its distribution
(sampling). Prints the new ids comma-separated on the first line, then stats.

  -m, --model DIR         target model directory (HF format)
  -a, --assistant DIR     draft (assistant) model directory
      --tokens IDS        prompt token ids, comma-separated
  -n, --max-new-tokens N  tokens to generate (default 32)
      --draft-max K       drafted tokens per round (default 5)
      --schedule S        constant | heuristic | heuristic_transient | confidence
                          (default constant)
      --confidence P      draft confidence threshold for --schedule confidence (0.4)
      --prompt-lookup N   propose N tokens per round by n-gram lookup (no draft)
      --ngram N           longest n-gram for --prompt-lookup (default 2)
      --temp T            sampling temperature (> 0 turns sampling on)
      --do-sample         sample (temperature 1 unless --temp)
      --top-k K           keep the K most likely tokens (0: off)
      --top-p P           nucleus sampling (1: off)
      --min-p P           drop tokens below P * max probability (0: off)
      --repetition-penalty R  HF repetition penalty (1: off)
      --seed S            RNG seed (default 0)
      --ignore-eos        do not stop at the model's EOS ids
  -t, --threads N         threads (default: all cores)
)";

Schedule parse_schedule(const std::string& s) {
  if (s == "constant") return Schedule::constant;
  if (s == "heuristic") return Schedule::heuristic;
  if (s == "heuristic_transient") return Schedule::heuristic_transient;
  if (s == "confidence") return Schedule::confidence;
  throw UsageError("--schedule: unknown schedule '" + s +
                   "' (constant, heuristic, heuristic_transient, confidence)");
}

void print_ids(const std::vector<Token>& ids) {
  std::string line;
  for (std::size_t i = 0; i < ids.size(); ++i) line += (i ? "," : "") + std::to_string(ids[i]);
  std::printf("%s\n", line.c_str());
}

void print_stats(const GenerationResult& r, bool assisted) {
  const auto& s = r.stats;
  std::printf("stop: %s\n", std::string(stop_reason_name(r.stop_reason)).c_str());
  std::printf("new tokens: %zu in %.3f s (%.1f tokens/s)\n", s.new_tokens, s.total_seconds,
              s.total_seconds > 0 ? double(s.new_tokens) / s.total_seconds : 0.0);
  if (assisted) {
    std::printf("drafted: %zu, accepted: %zu, acceptance rate: %.3f\n", s.drafted, s.accepted,
                s.acceptance_rate());
    std::printf("target calls: %zu, tokens per target call: %.2f, mean K: %.2f\n", s.target_calls,
                s.tokens_per_target_call(), s.mean_k());
    std::printf("time: draft %.3f s, target %.3f s, loop %.3f s\n", s.draft_seconds,
                s.target_seconds, s.loop_seconds());
  } else {
    std::printf("target calls: %zu\n", s.target_calls);
  }
}

SpecialTokens special_tokens(const ModelConfig& c) {
  SpecialTokens t;
  t.eos_token_ids = c.eos_token_ids;
  if (!c.bos_token_ids.empty()) t.bos_token_id = c.bos_token_ids.front();
  return t;
}

}  // namespace

const char* generate_help() { return kHelp; }

int run_generate(const std::vector<std::string>& argv) {
  Args a(argv,
         {"--model", "--assistant", "--tokens", "--max-new-tokens", "--draft-max", "--schedule",
          "--confidence", "--prompt-lookup", "--ngram", "--temp", "--top-k", "--top-p", "--min-p",
          "--repetition-penalty", "--seed", "--threads"},
         {"--do-sample", "--ignore-eos"},
         {{"-m", "--model"}, {"-a", "--assistant"}, {"-n", "--max-new-tokens"}, {"-t", "--threads"}});
  const auto prompt = parse_token_list(a.require("--tokens"));
  GenerationConfig cfg;
  cfg.max_new_tokens = static_cast<std::size_t>(a.get_int("--max-new-tokens", 32, 1, 1 << 24));
  cfg.num_assistant_tokens = static_cast<std::size_t>(a.get_int("--draft-max", 5, 1, 128));
  cfg.schedule = parse_schedule(a.get("--schedule").value_or("constant"));
  cfg.assistant_confidence_threshold = static_cast<float>(a.get_double("--confidence", 0.4, 0.0, 1.0));
  cfg.prompt_lookup_num_tokens = static_cast<std::size_t>(a.get_int("--prompt-lookup", 0, 0, 128));
  cfg.max_matching_ngram_size = static_cast<std::size_t>(a.get_int("--ngram", 2, 1, 64));
  cfg.do_sample = a.flag("--do-sample") || a.has("--temp");
  cfg.temperature = static_cast<float>(a.get_double("--temp", 1.0, 1e-6, 1e6));
  cfg.top_k = static_cast<std::size_t>(a.get_int("--top-k", 0, 0, 1 << 30));
  cfg.top_p = static_cast<float>(a.get_double("--top-p", 1.0, 1e-6, 1.0));
  cfg.min_p = static_cast<float>(a.get_double("--min-p", 0.0, 0.0, 1.0));
  cfg.repetition_penalty = static_cast<float>(a.get_double("--repetition-penalty", 1.0, 1e-6, 1e6));
  cfg.seed = static_cast<std::uint64_t>(a.get_int("--seed", 0, 0, INT64_MAX));
  const bool assisted_by_draft = a.has("--assistant");
  if (assisted_by_draft && cfg.prompt_lookup_num_tokens > 0)
    throw UsageError("--assistant and --prompt-lookup are alternatives: give one");

  cpu::LoadOptions opts;
  opts.threads = static_cast<int>(a.get_int("--threads", 0, 0, 1024));
  auto target_model = std::make_shared<const cpu::Transformer>(cpu::Transformer::load(a.require("--model"), opts));
  cfg.target_special_tokens = special_tokens(target_model->config());
  if (a.flag("--ignore-eos")) cfg.target_special_tokens->eos_token_ids.clear();
  AnyModel target(target_model);

  GenerationResult result;
  bool assisted = true;
  if (assisted_by_draft) {
    auto draft_model = std::make_shared<const cpu::Transformer>(cpu::Transformer::load(a.require("--assistant"), opts));
    if (!a.flag("--ignore-eos")) cfg.draft_special_tokens = special_tokens(draft_model->config());
    AnyModel draft(draft_model);
    SpeculativeDecoder decoder(draft, target, cfg);
    result = decoder.generate(prompt);
  } else if (cfg.prompt_lookup_num_tokens > 0) {
    SpeculativeDecoder decoder(target, cfg);
    result = decoder.generate(prompt);
  } else {
    assisted = false;
    result = generate_autoregressive(target, prompt, cfg);
  }
  print_ids(result.tokens);
  print_stats(result, assisted);
  return 0;
}

}  // namespace assistgen::cli
