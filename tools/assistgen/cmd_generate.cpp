// assistgen generate: plain or assisted decoding, from a text prompt (-p,
// streamed text out; the model directories need a tokenizer.json) or from
// token ids (--tokens, ids out). Both modes resolve their options the same
// way: the command line, else the target's generation_config.json, else the
// library defaults (resolve_generation_config). Every combination of options
// is checked before anything is loaded.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <tuple>

#include "assistgen/any_model.hpp"
#include "assistgen/autoregressive.hpp"
#include "assistgen/cpu/transformer.hpp"
#include "assistgen/generate.hpp"
#include "assistgen/self_speculative_decoder.hpp"
#include "assistgen/speculative_decoder.hpp"
#include "assistgen/tree_decoder.hpp"
#include "assistgen/universal_decoder.hpp"
#include "commands.hpp"
#include "hpu_ref.hpp"
#include "tree_options.hpp"

namespace assistgen::cli {

namespace {

using nlohmann::json;

constexpr const char* kDescription =
    R"(Continues the prompt with the target model, greedily unless sampling is on
(--do-sample, --temp T > 0, or do_sample in generation_config.json; --greedy
or --temp 0 forces greedy). With -a (a draft model), --early-exit E (the
target's own first E layers draft: self-speculation) or --prompt-lookup,
decoding is assisted: the output is exactly the target's own (greedy), or
follows its distribution (sampling).

-p TEXT: the model directories need a tokenizer.json; the continuation is
printed as it is generated, then a blank line and the stats. A draft with the
target's tokenizer shares its token ids (also when the target's embedding has
more rows, padding, than the draft's: those rows are masked); a draft whose
tokenizer differs is used through re-tokenization (universal assisted
generation). The stats say which path was taken and why.
--tokens IDS: prints the new ids comma-separated on the first line, then the
stats; no tokenizer is needed.
Options not given take the target's generation_config.json values (both
modes), else the library defaults shown below.)";

struct Args {
  std::string model, assistant, prompt, tokens, schedule = "constant", dtype, draft_dtype,
                                                backend = "cpu";
  std::vector<std::string> stop;
  std::size_t max_new_tokens = 64, draft_max = 5, draft_min = 0, prompt_lookup = 0, ngram = 2,
              top_k = 50, repeat = 5, early_exit = 0, tree_nodes = 0, tree_width = 4;
  std::string tree_shape;
  std::int64_t seed = 0;
  int threads = 0;
  double confidence = 0.4, draft_p_min = 0.0, temp = 1.0, top_p = 1.0, min_p = 0.0,
         repetition_penalty = 1.0;
  bool do_sample = false, greedy = false, ignore_eos = false, show_special = false,
       parse_special = false, compare = false, json = false, verbose = false;
  // The options, to ask whether they were given.
  CLI::Option *o_model, *o_assistant, *o_prompt, *o_tokens, *o_max_new, *o_draft_max, *o_draft_min,
      *o_draft_p_min, *o_schedule, *o_confidence, *o_lookup, *o_ngram, *o_temp, *o_do_sample,
      *o_greedy, *o_top_k, *o_top_p, *o_min_p, *o_rep, *o_seed, *o_ignore_eos, *o_show_special,
      *o_parse_special, *o_threads, *o_dtype, *o_draft_dtype, *o_compare, *o_repeat, *o_backend,
      *o_stop, *o_early_exit, *o_tree_nodes, *o_tree_width, *o_tree_shape;
};

DraftLengthSchedule parse_schedule(const std::string& s) {
  if (s == "constant") return DraftLengthSchedule::constant;
  if (s == "heuristic") return DraftLengthSchedule::heuristic;
  if (s == "heuristic_transient") return DraftLengthSchedule::heuristic_transient;
  return DraftLengthSchedule::confidence;  // the validator allows nothing else
}

void register_options(CLI::App& sub, Args& a) {
  a.o_model = sub.add_option("-m,--model", a.model, "target model: HF directory or .gguf file (required)");
  a.o_assistant =
      sub.add_option("-a,--assistant", a.assistant, "draft (assistant) model: HF directory or .gguf file");
  a.o_early_exit = sub.add_option("--early-exit", a.early_exit,
                                  "self-speculation: the target's first E layers (then its final norm "
                                  "and LM head) draft on its own KV cache, all layers verify; E in "
                                  "[1, layers - 1]")
                       ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20));
  a.o_prompt = sub.add_option("-p,--prompt", a.prompt, "prompt text (text mode)");
  a.o_tokens =
      sub.add_option("--tokens", a.tokens, "prompt token ids, comma-separated (token mode)");
  a.o_max_new = sub.add_option("-n,--max-new-tokens", a.max_new_tokens, "tokens to generate")
                    ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 24))
                    ->capture_default_str();
  a.o_draft_max = sub.add_option("--draft-max", a.draft_max,
                                 "drafted tokens per round (-a only; the start value of the "
                                 "heuristic schedules, the maximum for confidence)")
                      ->check(CLI::Range(std::size_t{1}, std::size_t{128}))
                      ->capture_default_str();
  a.o_draft_min = sub.add_option("--draft-min", a.draft_min,
                                 "-a or --prompt-lookup: rounds that propose fewer tokens verify "
                                 "none (0: off)")
                      ->check(CLI::Range(std::size_t{0}, std::size_t{128}))
                      ->capture_default_str();
  a.o_draft_p_min = sub.add_option("--draft-p-min", a.draft_p_min,
                                   "-a only, any schedule: the draft stops before a token it "
                                   "gives a probability below P (0: off)")
                        ->check(CLI::Range(0.0, 1.0))
                        ->capture_default_str();
  a.o_schedule =
      sub.add_option("--schedule", a.schedule, "how the drafted tokens per round change (-a only)")
          ->check(one_of({"constant", "heuristic", "heuristic_transient", "confidence"}))
          ->capture_default_str();
  a.o_confidence = sub.add_option("--confidence", a.confidence,
                                  "draft confidence threshold (--schedule confidence only)")
                       ->check(CLI::Range(0.0, 1.0))
                       ->capture_default_str();
  a.o_lookup = sub.add_option("--prompt-lookup", a.prompt_lookup,
                              "propose N tokens per round by n-gram lookup, no draft (0: off)")
                   ->check(CLI::Range(std::size_t{0}, std::size_t{128}))
                   ->capture_default_str();
  a.o_ngram = sub.add_option("--ngram", a.ngram, "longest n-gram for --prompt-lookup")
                  ->check(CLI::Range(std::size_t{1}, std::size_t{64}))
                  ->capture_default_str();
  add_tree_options(sub, a.tree_nodes, a.tree_width, a.tree_shape, a.o_tree_nodes, a.o_tree_width,
                   a.o_tree_shape);
  a.o_temp =
      sub.add_option("--temp", a.temp, "sampling temperature; > 0 turns sampling on, 0 is greedy")
          ->check(CLI::Range(0.0, 1e6));
  a.o_do_sample = sub.add_flag("--do-sample", a.do_sample, "sample (temperature 1 unless --temp)");
  a.o_greedy = sub.add_flag("--greedy", a.greedy,
                            "greedy decoding, whatever generation_config.json says (as --temp 0)");
  a.o_top_k = sub.add_option("--top-k", a.top_k, "keep the K most likely tokens (0: off)")
                  ->check(CLI::Range(std::size_t{0}, std::size_t{1} << 30))
                  ->capture_default_str();
  a.o_top_p = sub.add_option("--top-p", a.top_p, "nucleus sampling (1: off)")
                  ->check(CLI::Range(1e-6, 1.0))
                  ->capture_default_str();
  a.o_min_p = sub.add_option("--min-p", a.min_p, "drop tokens below P * max probability (0: off)")
                  ->check(CLI::Range(0.0, 1.0))
                  ->capture_default_str();
  a.o_rep =
      sub.add_option("--repetition-penalty", a.repetition_penalty, "HF repetition penalty (1: off)")
          ->check(CLI::Range(1e-6, 1e6))
          ->capture_default_str();
  a.o_seed = sub.add_option("--seed", a.seed, "RNG seed; -1: a random seed, printed with the stats")
                 ->check(CLI::Range(std::int64_t{-1}, INT64_MAX))
                 ->capture_default_str();
  a.o_ignore_eos = sub.add_flag("--ignore-eos", a.ignore_eos, "do not stop at the model's EOS ids");
  a.o_stop = add_stop_option(sub, a.stop);
  a.o_show_special = sub.add_flag("--show-special", a.show_special,
                                  "-p only: print special tokens (EOS, ...) in the text");
  a.o_parse_special = sub.add_flag(
      "--parse-special", a.parse_special,
      "-p only: match special-token text (\"<|endoftext|>\") in the prompt as single tokens "
      "(default: it stays text)");
  a.o_threads = sub.add_option("-t,--threads", a.threads, "threads (0: all cores)")
                    ->check(CLI::Range(0, 1024))
                    ->capture_default_str();
  a.o_dtype =
      sub.add_option("--dtype", a.dtype,
                     "matmul weights: f32, bf16, int8 or int4 (default: bf16 for a checkpoint "
                     "stored in bf16, else f32); --backend hpu-ref: f32 (default), bf16 or fp8")
          ->check(one_of({"f32", "bf16", "int8", "i8", "int4", "i4", "fp8"}));
  a.o_draft_dtype = sub.add_option("--draft-dtype", a.draft_dtype,
                                   "-a only: the draft's matmul weights, f32, bf16, int8 or int4 "
                                   "(default: as --dtype); the output stays the target's")
                        ->check(one_of({"f32", "bf16", "int8", "i8", "int4", "i4"}));
  a.o_compare = sub.add_flag("--compare", a.compare,
                             "-p with -a or --prompt-lookup: also run the target alone, print "
                             "the speedup and whether the outputs are identical");
  a.o_repeat = sub.add_option("--repeat", a.repeat, "timed runs of each side for --compare")
                   ->check(CLI::Range(std::size_t{1}, std::size_t{1000}))
                   ->capture_default_str();
  a.o_backend = sub.add_option("--backend", a.backend,
                               "cpu, or hpu-ref (the HPU backend's static-shape graphs on its "
                               "CPU reference device; --dtype f32, bf16 or fp8)")
                    ->check(one_of({"cpu", "hpu-ref"}))
                    ->capture_default_str();
  sub.add_flag("--json", a.json, "print the stats as one JSON object instead of text lines");
  sub.add_flag("-v,--verbose", a.verbose,
               "assisted runs: also print the acceptance rate at each draft position");
}

// Every combination is checked here, before a model is loaded.
void check_combinations(const Args& a) {
  require_option(a.o_model);
  const bool text = given(a.o_prompt), ids = given(a.o_tokens);
  if (text && ids) throw UsageError("--prompt and --tokens are alternatives: give one");
  if (!text && !ids)
    throw UsageError("missing the prompt: give --prompt TEXT (-p) or --tokens IDS");
  const bool model_draft = given(a.o_assistant), lookup = given(a.o_lookup) && a.prompt_lookup > 0,
             early = given(a.o_early_exit);
  if (model_draft && lookup)
    throw UsageError("--assistant and --prompt-lookup are alternatives: give one");
  if (early && (model_draft || lookup))
    throw UsageError(std::string("--early-exit (the target drafts for itself) and ") +
                     (model_draft ? "--assistant" : "--prompt-lookup") + " are alternatives: give one");
  // The draft-length options apply to any drafting model: -a or --early-exit.
  const bool draft = model_draft || early;
  if (a.backend == "hpu-ref") {
    if (tensor_parallel())
      throw UsageError("--backend hpu-ref does not split across MPI ranks: run it without mpirun");
    require_with(a.o_threads, false, "does not apply to --backend hpu-ref");
    (void)hpu_dtype(a.o_dtype, a.dtype);  // int8 / int4: a usage error naming --dtype
    require_with(a.o_draft_dtype, false,
                 "does not apply to --backend hpu-ref (--dtype sets both models)");
  }
  require_with(a.o_draft_dtype, model_draft, "applies only with a draft model (-a)");
  require_with(a.o_ngram, lookup, "applies only with --prompt-lookup N (N > 0)");
  require_with(a.o_draft_min, draft || lookup, "applies only with -a, --early-exit or --prompt-lookup");
  if (given(a.o_draft_min) && given(a.o_draft_max) && a.draft_min > a.draft_max)
    throw UsageError("--draft-min " + std::to_string(a.draft_min) + " exceeds --draft-max " +
                     std::to_string(a.draft_max) + ": no draft would ever be verified");
  for (const CLI::Option* o : {a.o_draft_max, a.o_schedule, a.o_draft_p_min})
    require_with(o, draft, "applies only with a draft model (-a or --early-exit)");
  check_tree_combination(a.o_tree_nodes, a.o_tree_width, a.o_tree_shape, model_draft);
  // A tree grows to --draft-max levels every round: the draft-length rules
  // of chains do not shape it (candidates/draft_tree.hpp).
  const bool tree = (given(a.o_tree_nodes) && a.tree_nodes > 0) || given(a.o_tree_shape);
  require_with(a.o_schedule, !tree || a.schedule == "constant",
               "does not apply to tree drafts (--tree-nodes / --tree-shape): a tree's depth is "
               "--draft-max every round");
  require_with(a.o_draft_p_min, !tree,
               "does not apply to tree drafts (--tree-nodes / --tree-shape), which rank nodes by "
               "their cumulative draft probability instead");
  require_with(a.o_confidence, draft && a.schedule == "confidence",
               "applies only with -a or --early-exit and --schedule confidence");
  require_with(a.o_show_special, text, "needs --prompt (with --tokens the output is ids)");
  require_with(a.o_parse_special, text, "needs --prompt (with --tokens there is no text)");
  require_with(a.o_stop, text, "needs --prompt (stop strings are matched in the text)");
  require_with(a.o_compare, text, "needs --prompt (-p)");
  require_with(a.o_compare, draft || lookup, "needs an assistant (-a), --early-exit or --prompt-lookup");
  require_with(a.o_repeat, a.compare, "applies only with --compare");
  const bool temp_zero = given(a.o_temp) && a.temp == 0.0;
  if (a.greedy && given(a.o_do_sample))
    throw UsageError("--greedy and --do-sample are alternatives");
  if (temp_zero && given(a.o_do_sample))
    throw UsageError("--temp 0 means greedy decoding: drop --do-sample, or give a temperature > 0");
  if (a.greedy && given(a.o_temp) && !temp_zero)
    throw UsageError("--greedy and --temp " + std::to_string(a.temp) + " are alternatives");
  if (a.greedy || temp_zero)
    for (const CLI::Option* o : {a.o_top_k, a.o_top_p, a.o_min_p})
      require_with(o, false, "applies only when sampling, and --greedy / --temp 0 is greedy");
}

// The command line as overrides of generation_config.json.
GenerateOptions overrides(const Args& a, std::uint64_t seed) {
  GenerateOptions o;
  if (given(a.o_max_new)) o.max_new_tokens = a.max_new_tokens;
  if (given(a.o_draft_max)) o.num_assistant_tokens = a.draft_max;
  if (given(a.o_schedule)) o.schedule = parse_schedule(a.schedule);
  if (given(a.o_draft_min)) o.draft_min_tokens = a.draft_min;
  if (given(a.o_draft_p_min)) o.draft_p_min = static_cast<float>(a.draft_p_min);
  if (given(a.o_confidence)) o.assistant_confidence_threshold = static_cast<float>(a.confidence);
  if (given(a.o_lookup)) o.prompt_lookup_num_tokens = a.prompt_lookup;
  if (given(a.o_early_exit)) o.assistant_early_exit = a.early_exit;
  if (given(a.o_ngram)) o.max_matching_ngram_size = a.ngram;
  if (given(a.o_tree_nodes)) o.tree_nodes = a.tree_nodes;
  if (given(a.o_tree_width)) o.tree_width = a.tree_width;
  if (given(a.o_tree_shape)) o.tree_shape = parse_tree_shape(a.tree_shape);
  const bool temp_zero = given(a.o_temp) && a.temp == 0.0;
  if (a.greedy || temp_zero) {
    o.do_sample = false;
  } else if (a.do_sample || given(a.o_temp)) {
    o.do_sample = true;
    if (given(a.o_temp)) o.temperature = static_cast<float>(a.temp);
  }
  if (given(a.o_top_k)) o.top_k = a.top_k;
  if (given(a.o_top_p)) o.top_p = static_cast<float>(a.top_p);
  if (given(a.o_min_p)) o.min_p = static_cast<float>(a.min_p);
  if (given(a.o_rep)) o.repetition_penalty = static_cast<float>(a.repetition_penalty);
  if (given(a.o_seed)) o.seed = seed;
  if (a.ignore_eos) o.eos_token_id = std::vector<Token>{};
  if (a.show_special) o.skip_special_tokens = false;
  if (a.parse_special) o.parse_special = true;
  if (given(a.o_stop)) o.stop = a.stop;
  return o;
}

std::string ids_line(const std::vector<Token>& ids) {
  std::string line;
  for (std::size_t i = 0; i < ids.size(); ++i) line += (i ? "," : "") + std::to_string(ids[i]);
  return line;
}

// What the stats report, in either form (text lines or --json).
struct Report {
  const GenerationStats& stats;
  StopReason stop;
  const std::vector<Token>& tokens;
  std::optional<Assistance> assistance;  // text mode only
  std::size_t prompt_tokens = 0;
  bool assisted = false;
  std::optional<std::uint64_t> random_seed;  // --seed -1
  bool verbose = false;
  bool tree = false;  // tree drafts: drafted counts nodes, accepted the path depth
  json extra = json::object();
};

void print_text_stats(const Report& r) {
  const auto& s = r.stats;
  if (r.random_seed)
    std::printf("seed: %llu (random)\n", static_cast<unsigned long long>(*r.random_seed));
  std::printf("stop: %s\n", std::string(stop_reason_name(r.stop)).c_str());
  std::printf("new tokens: %zu in %.3f s (%.1f tokens/s)\n", s.new_tokens, s.total_seconds,
              s.total_seconds > 0 ? double(s.new_tokens) / s.total_seconds : 0.0);
  if (r.assisted) {
    std::printf("drafted: %zu, accepted: %zu, acceptance rate: %.3f\n", s.drafted, s.accepted,
                s.acceptance_rate());
    if (s.draft_tokens != s.drafted)
      std::printf("draft tokens: %zu (the draft's own, re-tokenized into the %zu drafted)\n", s.draft_tokens,
                  s.drafted);
    std::printf("target calls: %zu, tokens per target call: %.2f, mean K: %.2f\n", s.target_calls,
                s.tokens_per_target_call(), s.mean_k());
    if (r.tree) print_tree_stats(s);
    std::printf("time: draft %.3f s, target %.3f s, loop %.3f s\n", s.draft_seconds,
                s.target_seconds, s.loop_seconds());
    if (r.verbose) {
      std::string line = "acceptance by position:";
      for (std::size_t i = 0; i < s.drafted_at.size(); ++i) {
        char buf[96];
        std::snprintf(buf, sizeof buf, " %zu: %.3f (%zu/%zu)", i + 1,
                      double(s.accepted_at[i]) / double(s.drafted_at[i]), s.accepted_at[i],
                      s.drafted_at[i]);
        line += (i ? "," : "") + std::string(buf);
      }
      std::printf("%s\n", line.c_str());
    }
  } else {
    std::printf("target calls: %zu\n", s.target_calls);
  }
}

json stats_json(const Report& r) {
  const auto& s = r.stats;
  json j = {
      {"stop", std::string(stop_reason_name(r.stop))},
      {"prompt_tokens", r.prompt_tokens},
      {"new_tokens", s.new_tokens},
      {"tokens", r.tokens},
      {"seconds", s.total_seconds},
      {"tokens_per_second", s.total_seconds > 0 ? double(s.new_tokens) / s.total_seconds : 0.0},
      {"target_calls", s.target_calls}};
  if (r.assistance) j["assistance"] = std::string(assistance_name(*r.assistance));
  if (r.random_seed) j["seed"] = *r.random_seed;
  if (r.assisted) {
    j["drafted"] = s.drafted;
    j["accepted"] = s.accepted;
    j["acceptance_rate"] = s.acceptance_rate();
    j["tokens_per_target_call"] = s.tokens_per_target_call();
    j["mean_k"] = s.mean_k();
    j["draft_calls"] = s.draft_calls;
    j["draft_tokens"] = s.draft_tokens;
    j["draft_seconds"] = s.draft_seconds;
    j["target_seconds"] = s.target_seconds;
    j["loop_seconds"] = s.loop_seconds();
    if (r.tree) j.update(tree_stats_json(s));
    j["drafted_at"] = s.drafted_at;
    j["accepted_at"] = s.accepted_at;
  }
  j.update(r.extra);
  return j;
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
// kernel selection, page faults) and then timed `reps` times, alternating
// so that machine noise hits both alike; medians are compared. Whether the
// outputs must be identical depends on the configuration the run resolved
// (generation_config.json may turn sampling on), not on the command line.
json compare_with_target_alone(std::size_t reps, const Model& target,
                               const std::optional<Model>& draft, const std::string& prompt,
                               const GenerateOptions& o, const TextResult& assisted_result,
                               bool sampling, bool print) {
  GenerateOptions plain_opts = o;
  plain_opts.prompt_lookup_num_tokens = 0;
  plain_opts.assistant_early_exit = 0;
  plain_opts.tree_nodes = 0;  // tree drafts are options of the assisted side only
  plain_opts.tree_shape = std::vector<std::size_t>{};
  auto run_plain = [&] { return target.generate(prompt, plain_opts); };
  auto run_assisted = [&] {
    return draft ? target.generate(prompt, *draft, o) : target.generate(prompt, o);
  };
  TextResult plain = run_plain();
  run_assisted();
  std::vector<double> t_plain, t_assisted;
  for (std::size_t i = 0; i < reps; ++i) {
    plain = run_plain();
    t_plain.push_back(plain.stats.total_seconds);
    t_assisted.push_back(run_assisted().stats.total_seconds);
  }
  const double mp = median(t_plain), ma = median(t_assisted);
  const auto n_plain = static_cast<double>(plain.tokens.size());
  const auto n_assisted = static_cast<double>(assisted_result.tokens.size());
  const double speedup = ma > 0 ? (mp / n_plain) / (ma / n_assisted) : 0.0;
  const bool identical = plain.tokens == assisted_result.tokens;
  if (print) {
    std::printf("\ncompared with the target alone (median of %zu runs each):\n", reps);
    std::printf("target alone: %zu tokens in %.4f s (%.1f tokens/s)\n", plain.tokens.size(), mp,
                mp > 0 ? n_plain / mp : 0.0);
    std::printf("assisted:     %zu tokens in %.4f s (%.1f tokens/s)\n",
                assisted_result.tokens.size(), ma, ma > 0 ? n_assisted / ma : 0.0);
    std::printf("speedup: %.2fx\n", speedup);
    if (sampling)
      std::printf(
          "identical output: not compared (sampling: equal in distribution, not token by "
          "token)\n");
    else
      std::printf("identical output: %s\n",
                  identical ? "yes (greedy assisted text == the target's own greedy text)"
                            : "NO: assisted greedy output differs from the target alone");
  }
  json j = {{"repeat", reps},
            {"target_alone_seconds", mp},
            {"assisted_seconds", ma},
            {"speedup", speedup}};
  if (sampling)
    j["identical"] = nullptr;
  else
    j["identical"] = identical;
  return {{"compare", j}};
}

LoadModelOptions load_options(const Args& a) {
  LoadModelOptions lo;
  lo.threads = a.threads;
  if (given(a.o_dtype)) lo.dtype = parse_dtype(a.dtype);
  return lo;
}

// --backend hpu-ref with -p: kv_len buckets for the prompt (as the target's
// tokenizer encodes it, plus a BOS) and the new tokens the run resolves to.
std::optional<HpuRefLoader> text_hpu_loader(const Args& a, const GenerateOptions& o) {
  if (a.backend != "hpu-ref") return std::nullopt;
  const std::size_t prompt =
      Tokenizer::load(a.model).encode(a.prompt, {.parse_special = a.parse_special}).size() + 1;
  GenerateOptions defaults;
  const std::filesystem::path gen = std::filesystem::path(a.model) / "generation_config.json";
  if (std::filesystem::exists(gen)) defaults = GenerateOptions::load_generation_config(gen);
  const GenerationConfig cfg = resolve_generation_config(defaults, o, prompt);
  return HpuRefLoader(prompt + cfg.max_new_tokens, hpu_dtype(a.o_dtype, a.dtype));
}

int run_text(const Args& a, const GenerateOptions& o, std::optional<std::uint64_t> random_seed) {
  std::optional<HpuRefLoader> hpu_loader = text_hpu_loader(a, o);
  LoadModelOptions lo = hpu_loader ? LoadModelOptions{} : load_options(a);
  if (hpu_loader) lo.backend = hpu_loader->backend();  // the target and the draft
  LoadModelOptions target_lo = lo;
  if (!hpu_loader)
    target_lo.tensor_parallel = target_group();  // under mpirun: split; the draft runs whole on every rank
  const Model target = load_with_progress(a.model, target_lo);
  announce_split(target);
  std::optional<Model> draft;
  if (given(a.o_assistant)) {
    LoadModelOptions draft_lo = lo;  // --draft-dtype: CPU only (check_combinations)
    if (given(a.o_draft_dtype)) draft_lo.dtype = parse_dtype(a.draft_dtype);
    draft.emplace(load_with_progress(a.assistant, draft_lo));
  }
  const GenerationConfig resolved =
      target.generation_config(o, target.encode_prompt(a.prompt, a.parse_special).size());
  auto stream = [](std::string_view piece) {
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    return true;
  };
  const TextResult r =
      draft ? target.generate(a.prompt, *draft, o, stream) : target.generate(a.prompt, o, stream);
  std::printf("\n\n");
  Report rep{r.stats,
             r.stop_reason,
             r.tokens,
             r.assistance,
             r.prompt_tokens.size(),
             r.assistance != Assistance::none,
             random_seed,
             a.verbose};
  rep.tree = r.assistance == Assistance::draft && (given(a.o_tree_nodes) || given(a.o_tree_shape));
  if (!a.json) {
    if (r.assistance != Assistance::none)
      std::printf("assistance: %s%s%s%s\n", std::string(assistance_name(r.assistance)).c_str(),
                  r.assistance_reason.empty() ? "" : " (", r.assistance_reason.c_str(),
                  r.assistance_reason.empty() ? "" : ")");
    std::printf("prompt tokens: %zu\n", r.prompt_tokens.size());
    print_text_stats(rep);
  }
  if (!r.assistance_reason.empty()) rep.extra["assistance_reason"] = r.assistance_reason;
  if (a.compare)
    rep.extra.update(compare_with_target_alone(a.repeat, target, draft, a.prompt, o, r,
                                          resolved.do_sample, !a.json));
  if (a.json) std::printf("%s\n", stats_json(rep).dump().c_str());
  if (hpu_loader && !a.json) hpu_loader->report();
  return 0;
}

int run_tokens(const Args& a, const GenerateOptions& o, std::optional<std::uint64_t> random_seed) {
  const auto prompt = parse_token_list(a.tokens);
  // The target's generation_config.json, as in text mode; eos / bos not in
  // it come from config.json (target_special_tokens below).
  GenerateOptions defaults;
  const std::filesystem::path gen = std::filesystem::path(a.model) / "generation_config.json";
  if (std::filesystem::exists(gen)) defaults = GenerateOptions::load_generation_config(gen);
  GenerationConfig cfg = resolve_generation_config(defaults, o, prompt.size());

  cpu::LoadOptions opts;
  opts.threads = a.threads;
  const bool hpu = a.backend == "hpu-ref";
  if (given(a.o_dtype) && !hpu) opts.dtype = parse_dtype(a.dtype);
  // Loads a directory on the chosen backend; `special` receives its tokens.
  HpuRefLoader hpu_loader(prompt.size() + cfg.max_new_tokens,
                          hpu ? hpu_dtype(a.o_dtype, a.dtype) : DType::f32);
  auto load = [&](const std::string& dir, SpecialTokens& special) -> AnyModel {
    if (hpu) {
      LoadedBackend b = hpu_loader.backend()(dir);
      special = special_tokens(b.config);
      return std::move(b.model);
    }
    std::shared_ptr<const cpu::Transformer> m;
    with_load_progress(dir, [&](const ProgressSink& sink) {
      cpu::LoadOptions o = opts;
      o.on_progress = sink;
      m = std::make_shared<const cpu::Transformer>(cpu::Transformer::load(dir, o));
    });
    special = special_tokens(m->config());
    return AnyModel(m);
  };
  SpecialTokens target_special;
  if (a.backend != "hpu-ref")
    opts.tensor_parallel = target_group();  // under mpirun: split the target
  AnyModel target = load(a.model, target_special);
  opts.tensor_parallel = nullptr;  // the draft runs whole on every rank
  if (given(a.o_draft_dtype)) opts.dtype = parse_dtype(a.draft_dtype);
  if (const auto* t = target.get_if<cpu::Transformer>()) announce_split(*t);
  // With a tokenizer.json beside it, the rows it has no token for are
  // suppressed, as in text mode (generate.hpp), so that the same ids and
  // seed give the same tokens in both modes.
  if (std::filesystem::exists(std::filesystem::path(a.model) / "tokenizer.json")) {
    const Model with_tokenizer(target, Tokenizer::load(a.model));
    cfg.suppress_tokens.insert(cfg.suppress_tokens.end(), with_tokenizer.masked_tokens().begin(),
                               with_tokenizer.masked_tokens().end());
  }
  cfg.target_special_tokens = target_special;
  if (a.ignore_eos) cfg.target_special_tokens->eos_token_ids.clear();

  GenerationResult result;
  bool assisted = true;
  std::optional<Assistance> path;
  std::string reason;
  if (given(a.o_assistant)) {
    SpecialTokens draft_special;
    AnyModel draft = load(a.assistant, draft_special);
    if (!a.ignore_eos) cfg.draft_special_tokens = draft_special;
    // With a tokenizer.json on both sides the vocabularies are compared, as
    // in text mode (Model::pairing): the same tokenizer shares ids (a padded
    // target's extra rows are masked above), another one is re-tokenized.
    const auto tokenizer_of = [](const std::string& dir) {
      return std::filesystem::exists(std::filesystem::path(dir) / "tokenizer.json");
    };
    if (tokenizer_of(a.model) && tokenizer_of(a.assistant)) {
      const Model t(target, Tokenizer::load(a.model)), d(draft, Tokenizer::load(a.assistant));
      std::tie(path, reason) = t.pairing(d);
      if (path == Assistance::universal) {
        UniversalOptions uo;
        uo.draft_suppress_tokens.assign(d.masked_tokens().begin(), d.masked_tokens().end());
        UniversalDecoder decoder(draft, d.tokenizer(), target, t.tokenizer(), cfg, std::move(uo));
        result = decoder.generate(prompt);
      }
    } else {
      path = Assistance::draft;
      reason = "no tokenizer.json on both sides: the ids are shared, the logit rows checked";
    }
    if (path == Assistance::draft && uses_tree(cfg)) {
      TreeDecoder decoder(draft, target, cfg);
      result = decoder.generate(prompt);
    } else if (path == Assistance::draft) {
      SpeculativeDecoder decoder(draft, target, cfg);
      result = decoder.generate(prompt);
    } else if (uses_tree(cfg)) {
      throw UsageError("--tree-nodes / --tree-shape need an assistant with the target's tokenizer");
    }
  } else if (given(a.o_early_exit)) {
    SelfSpeculativeDecoder decoder(target, a.early_exit, cfg);
    path = Assistance::early_exit;
    reason = "the target's first " + std::to_string(a.early_exit) + " of " +
             std::to_string(target.num_layers()) + " layers draft; verification " +
             (decoder.reuses() ? "reuses their K/V and hidden states" : "recomputes every layer");
    result = decoder.generate(prompt);
  } else if (cfg.prompt_lookup_num_tokens > 0) {
    SpeculativeDecoder decoder(target, cfg);
    result = decoder.generate(prompt);
  } else {
    assisted = false;
    result = generate_autoregressive(target, prompt, cfg);
  }
  std::printf("%s\n", ids_line(result.tokens).c_str());
  Report rep{result.stats,  result.stop_reason, result.tokens, path,
             prompt.size(), assisted,           random_seed,   a.verbose};
  rep.tree = path == Assistance::draft && uses_tree(cfg);
  if (!reason.empty()) rep.extra["assistance_reason"] = reason;
  if (!a.json && path)
    std::printf("assistance: %s (%s)\n", std::string(assistance_name(*path)).c_str(), reason.c_str());
  if (a.json)
    std::printf("%s\n", stats_json(rep).dump().c_str());
  else
    print_text_stats(rep);
  hpu_loader.report();
  return 0;
}

}  // namespace

Command add_generate(CLI::App& app) {
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand(
      "generate",
      "greedy or sampled continuation of a text (-p) or of token ids, optionally assisted by a "
      "draft model");
  sub->footer(kDescription);
  register_options(*sub, *a);
  return {sub, [a] {
            check_combinations(*a);
            std::optional<std::uint64_t> random_seed;
            std::uint64_t seed = static_cast<std::uint64_t>(a->seed);
            if (a->seed == -1) {
              std::random_device rd;
              seed = (std::uint64_t{rd()} << 32 | rd()) & INT64_MAX;
              random_seed = seed;
            }
            // Under mpirun every rank samples in lockstep: rank 0's seed for all.
            seed = same_on_every_rank(seed);
            if (random_seed) random_seed = seed;
            const GenerateOptions o = overrides(*a, seed);
            return given(a->o_prompt) ? run_text(*a, o, random_seed)
                                      : run_tokens(*a, o, random_seed);
          }};
}

}  // namespace assistgen::cli
