// assistgen generate: plain or assisted decoding, from a text prompt (-p,
// streamed text out; the model directories need a tokenizer.json) or from
// token ids (--tokens, ids out).
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "args.hpp"
#include "assistgen/any_model.hpp"
#include "assistgen/cpu/transformer.hpp"
#include "assistgen/generate.hpp"
#include "assistgen/greedy.hpp"
#include "assistgen/speculative_decoder.hpp"
#include "commands.hpp"

namespace assistgen::cli {

namespace {

constexpr const char* kHelp =
    R"(usage: assistgen generate -m TARGET [-a DRAFT] -p TEXT [-n N] [options]
       assistgen generate -m TARGET [-a DRAFT] --tokens IDS [-n N] [options]

Continues the prompt with the target model, greedily unless --temp/--do-sample
asks for sampling. With -a (a draft model) or --prompt-lookup, decoding is
assisted: the output is exactly the target's own (greedy), or follows its
distribution (sampling).

With -p, the prompt is text: the model directories need a tokenizer.json, the
continuation is printed as it is generated, then a blank line and the stats.
Options not given take the model's generation_config.json values. A draft
whose tokenizer differs from the target's is used through re-tokenization
(universal assisted generation, greedy only).
With --tokens, the prompt is token ids: prints the new ids comma-separated on
the first line, then the stats; no tokenizer is needed.

  -m, --model DIR         target model directory (HF format)
  -a, --assistant DIR     draft (assistant) model directory
  -p, --prompt TEXT       prompt text
      --tokens IDS        prompt token ids, comma-separated
  -n, --max-new-tokens N  tokens to generate (default: generation_config.json,
                          else 64 with -p; 32 with --tokens)
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
      --show-special      -p only: print special tokens (EOS, ...) in the text
  -t, --threads N         threads (default: all cores)
      --dtype T           matmul weights: f32 (default), bf16 or int8
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

// -p: text in, streamed text out. Only the options given on the command line
// override the models' generation_config.json.
int run_text(const Args& a) {
  GenerateOptions o;
  if (a.has("--max-new-tokens"))
    o.max_new_tokens = static_cast<std::size_t>(a.get_int("--max-new-tokens", 0, 1, 1 << 24));
  if (a.has("--draft-max"))
    o.num_assistant_tokens = static_cast<std::size_t>(a.get_int("--draft-max", 0, 1, 128));
  if (auto s = a.get("--schedule")) o.schedule = parse_schedule(*s);
  if (a.has("--confidence"))
    o.assistant_confidence_threshold =
        static_cast<float>(a.get_double("--confidence", 0, 0.0, 1.0));
  if (a.has("--prompt-lookup"))
    o.prompt_lookup_num_tokens = static_cast<std::size_t>(a.get_int("--prompt-lookup", 0, 0, 128));
  if (a.has("--ngram"))
    o.max_matching_ngram_size = static_cast<std::size_t>(a.get_int("--ngram", 0, 1, 64));
  if (a.flag("--do-sample") || a.has("--temp")) o.do_sample = true;
  if (a.has("--temp")) o.temperature = static_cast<float>(a.get_double("--temp", 1.0, 1e-6, 1e6));
  if (a.has("--top-k")) o.top_k = static_cast<std::size_t>(a.get_int("--top-k", 0, 0, 1 << 30));
  if (a.has("--top-p")) o.top_p = static_cast<float>(a.get_double("--top-p", 1.0, 1e-6, 1.0));
  if (a.has("--min-p")) o.min_p = static_cast<float>(a.get_double("--min-p", 0.0, 0.0, 1.0));
  if (a.has("--repetition-penalty"))
    o.repetition_penalty = static_cast<float>(a.get_double("--repetition-penalty", 1.0, 1e-6, 1e6));
  if (a.has("--seed")) o.seed = static_cast<std::uint64_t>(a.get_int("--seed", 0, 0, INT64_MAX));
  if (a.flag("--ignore-eos")) o.eos_token_id = std::vector<Token>{};
  if (a.flag("--show-special")) o.skip_special_tokens = false;
  if (a.has("--assistant") && o.prompt_lookup_num_tokens.value_or(0) > 0)
    throw UsageError("--assistant and --prompt-lookup are alternatives: give one");

  LoadModelOptions lo;
  lo.threads = static_cast<int>(a.get_int("--threads", 0, 0, 1024));
  lo.dtype = parse_dtype(a.get("--dtype").value_or("f32"));
  const Model target = load_model(a.require("--model"), lo);
  std::optional<Model> draft;
  if (auto dir = a.get("--assistant")) draft.emplace(load_model(*dir, lo));
  const std::string prompt = a.require("--prompt");
  auto stream = [](std::string_view piece) {
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    return true;
  };
  const TextResult r =
      draft ? target.generate(prompt, *draft, o, stream) : target.generate(prompt, o, stream);
  std::printf("\n\n");
  if (r.assistance == Assistance::universal)
    std::printf(
        "assistance: universal (the draft's tokenizer differs; its text is re-tokenized)\n");
  else if (r.assistance != Assistance::none)
    std::printf("assistance: %s\n", std::string(assistance_name(r.assistance)).c_str());
  std::printf("prompt tokens: %zu\n", r.prompt_tokens.size());
  print_stats(GenerationResult{r.tokens, r.stats, r.stop_reason}, r.assistance != Assistance::none);
  return 0;
}

}  // namespace

const char* generate_help() { return kHelp; }

int run_generate(const std::vector<std::string>& argv) {
  Args a(argv,
         {"--model", "--assistant", "--tokens", "--prompt", "--max-new-tokens", "--draft-max",
          "--schedule", "--confidence", "--prompt-lookup", "--ngram", "--temp", "--top-k",
          "--top-p", "--min-p", "--repetition-penalty", "--seed", "--threads", "--dtype"},
         {"--do-sample", "--ignore-eos", "--show-special"},
         {{"-m", "--model"},
          {"-a", "--assistant"},
          {"-p", "--prompt"},
          {"-n", "--max-new-tokens"},
          {"-t", "--threads"}});
  if (a.has("--prompt") && a.has("--tokens"))
    throw UsageError("--prompt and --tokens are alternatives: give one");
  if (a.has("--prompt")) return run_text(a);
  if (!a.has("--tokens"))
    throw UsageError("missing the prompt: give --prompt TEXT (-p) or --tokens IDS");
  if (a.flag("--show-special"))
    throw UsageError("--show-special needs --prompt (with --tokens the output is ids)");
  const auto prompt = parse_token_list(a.require("--tokens"));
  GenerationConfig cfg;
  cfg.max_new_tokens = static_cast<std::size_t>(a.get_int("--max-new-tokens", 32, 1, 1 << 24));
  cfg.num_assistant_tokens = static_cast<std::size_t>(a.get_int("--draft-max", 5, 1, 128));
  cfg.schedule = parse_schedule(a.get("--schedule").value_or("constant"));
  cfg.assistant_confidence_threshold =
      static_cast<float>(a.get_double("--confidence", 0.4, 0.0, 1.0));
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
  opts.dtype = parse_dtype(a.get("--dtype").value_or("f32"));
  auto target_model =
      std::make_shared<const cpu::Transformer>(cpu::Transformer::load(a.require("--model"), opts));
  cfg.target_special_tokens = special_tokens(target_model->config());
  if (a.flag("--ignore-eos")) cfg.target_special_tokens->eos_token_ids.clear();
  AnyModel target(target_model);

  GenerationResult result;
  bool assisted = true;
  if (assisted_by_draft) {
    auto draft_model = std::make_shared<const cpu::Transformer>(
        cpu::Transformer::load(a.require("--assistant"), opts));
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
