// assistgen generate: plain or assisted decoding, from a text prompt (-p,
// streamed text out; the model directories need a tokenizer.json) or from
// token ids (--tokens, ids out).
#include <algorithm>
#include <cstdio>
#include <functional>
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
#ifdef ASSISTGEN_CLI_HAS_HPU
#include "assistgen/hpu/transformer.hpp"
#endif

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
      --dtype T           matmul weights: f32, bf16 or int8 (default: bf16 for a
                          checkpoint stored in bf16, else f32)
      --compare           -p with -a or --prompt-lookup: also run the target
                          alone with the same settings, and print the speedup
                          (medians over --repeat runs after a warm-up) and
                          whether the two outputs are identical
      --repeat R          timed runs of each for --compare (default 5)
      --backend B         --tokens only: cpu (default) or hpu-ref (the HPU
                          backend's static-shape graphs on its CPU reference
                          device; prints the graph-compilation counts)
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

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// --compare: times the assisted run against the target alone, same prompt and
// settings, in this process. Each side is warmed up once (first-call costs:
// kernel selection, page faults) and then timed `--repeat` times, alternating
// so that machine noise hits both alike; medians are compared.
void compare_with_target_alone(const Args& a, const Model& target,
                               const std::optional<Model>& draft, const std::string& prompt,
                               const GenerateOptions& o, const TextResult& assisted_result) {
  if (!draft && o.prompt_lookup_num_tokens.value_or(0) == 0)
    throw UsageError("--compare needs an assistant (-a) or --prompt-lookup");
  const int reps = static_cast<int>(a.get_int("--repeat", 5, 1, 1000));
  GenerateOptions plain_opts = o;
  plain_opts.prompt_lookup_num_tokens = 0;
  auto run_plain = [&] { return target.generate(prompt, plain_opts); };
  auto run_assisted = [&] {
    return draft ? target.generate(prompt, *draft, o) : target.generate(prompt, o);
  };
  TextResult plain = run_plain();
  run_assisted();
  std::vector<double> t_plain, t_assisted;
  for (int i = 0; i < reps; ++i) {
    plain = run_plain();
    t_plain.push_back(plain.stats.total_seconds);
    t_assisted.push_back(run_assisted().stats.total_seconds);
  }
  const double mp = median(t_plain), ma = median(t_assisted);
  const auto n_plain = static_cast<double>(plain.tokens.size());
  const auto n_assisted = static_cast<double>(assisted_result.tokens.size());
  std::printf("\ncompared with the target alone (median of %d runs each):\n", reps);
  std::printf("target alone: %zu tokens in %.4f s (%.1f tokens/s)\n", plain.tokens.size(), mp,
              mp > 0 ? n_plain / mp : 0.0);
  std::printf("assisted:     %zu tokens in %.4f s (%.1f tokens/s)\n", assisted_result.tokens.size(),
              ma, ma > 0 ? n_assisted / ma : 0.0);
  std::printf("speedup: %.2fx\n", ma > 0 ? (mp / n_plain) / (ma / n_assisted) : 0.0);
  if (o.do_sample.value_or(false))
    std::printf(
        "identical output: not compared (sampling: equal in distribution, not token by token)\n");
  else
    std::printf("identical output: %s\n",
                plain.tokens == assisted_result.tokens
                    ? "yes (greedy assisted text == the target's own greedy text)"
                    : "NO: assisted greedy output differs from the target alone");
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
  if (auto d = a.get("--dtype")) lo.dtype = parse_dtype(*d);
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
  if (a.flag("--compare")) compare_with_target_alone(a, target, draft, prompt, o, r);
  return 0;
}

}  // namespace

const char* generate_help() { return kHelp; }

int run_generate(const std::vector<std::string>& argv) {
  Args a(argv,
         {"--model",     "--assistant", "--tokens",     "--prompt",        "--max-new-tokens",
          "--draft-max", "--schedule",  "--confidence", "--prompt-lookup", "--ngram",
          "--temp",      "--top-k",     "--top-p",      "--min-p",         "--repetition-penalty",
          "--seed",      "--threads",   "--dtype",      "--repeat",        "--backend"},
         {"--do-sample", "--ignore-eos", "--show-special", "--compare"},
         {{"-m", "--model"},
          {"-a", "--assistant"},
          {"-p", "--prompt"},
          {"-n", "--max-new-tokens"},
          {"-t", "--threads"}});
  if (a.has("--prompt") && a.has("--tokens"))
    throw UsageError("--prompt and --tokens are alternatives: give one");
  const std::string backend = a.get("--backend").value_or("cpu");
  if (backend != "cpu" && backend != "hpu-ref")
    throw UsageError("--backend: unknown backend '" + backend + "' (cpu, hpu-ref)");
  if (a.has("--prompt")) {
    if (backend != "cpu") throw UsageError("--backend " + backend + " works with --tokens only");
    return run_text(a);
  }
  if (a.flag("--compare")) throw UsageError("--compare needs --prompt (-p)");
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
  if (auto d = a.get("--dtype")) opts.dtype = parse_dtype(*d);
  // Loads a directory on the chosen backend; `special` receives its tokens.
  std::vector<std::function<void()>> reports;
  auto load = [&](const std::string& dir, SpecialTokens& special) -> AnyModel {
    if (backend == "hpu-ref") {
#ifdef ASSISTGEN_CLI_HAS_HPU
      auto m = std::make_shared<const hpu::Transformer>(
          hpu::Transformer::load(dir, hpu::options_for(prompt.size() + cfg.max_new_tokens)));
      special = special_tokens(m->config());
      const std::size_t warm = m->graph_cache().stats().misses;
      reports.push_back([m, warm, dir] {
        const std::size_t total = m->graph_cache().stats().misses;
        std::printf("hpu-ref %s: %zu graphs compiled at warm-up, %zu after\n", dir.c_str(), warm,
                    total - warm);
      });
      return AnyModel(m);
#else
      throw UnsupportedError("--backend hpu-ref: this assistgen was built without the HPU backend");
#endif
    }
    auto m = std::make_shared<const cpu::Transformer>(cpu::Transformer::load(dir, opts));
    special = special_tokens(m->config());
    return AnyModel(m);
  };
  SpecialTokens target_special;
  AnyModel target = load(a.require("--model"), target_special);
  cfg.target_special_tokens = target_special;
  if (a.flag("--ignore-eos")) cfg.target_special_tokens->eos_token_ids.clear();

  GenerationResult result;
  bool assisted = true;
  if (assisted_by_draft) {
    SpecialTokens draft_special;
    AnyModel draft = load(a.require("--assistant"), draft_special);
    if (!a.flag("--ignore-eos")) cfg.draft_special_tokens = draft_special;
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
  for (const auto& report : reports) report();
  return 0;
}

}  // namespace assistgen::cli
