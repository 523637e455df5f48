// assistgen batch: many prompts from a JSONL file decoded together with
// continuous batching (Model::generate_batch, or generate_batch_ids for
// models without a tokenizer); one JSON object per line out, in the input's
// order, then aggregate stats on stderr. A bad line is reported on stderr
// naming its line number (and as an "error" object in the output); the
// other lines run all the same.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "assistgen/any_model.hpp"
#include "assistgen/cpu/transformer.hpp"
#include "assistgen/generate.hpp"
#include "commands.hpp"
#include "tree_options.hpp"

namespace assistgen::cli {

namespace {

using nlohmann::json;

constexpr const char* kDescription =
    R"(Generates for every line of a JSONL file, all sequences decoded together:
each round verifies every running sequence in one target pass (continuous
batching: a sequence joins as soon as there is room and leaves when done).
With -a, every sequence is assisted by the draft (its draft steps batched
too); with --early-exit E, by the target's own first E layers. Each sequence's output is exactly what `assistgen generate` gives it
alone.

Input, one JSON object per line (blank lines are skipped):
  {"prompt": "And God said", "max_new_tokens": 32, "seed": 1, "temp": 0.8}
  {"tokens": [1, 2, 3], "max_new_tokens": 8}       (models without a tokenizer)
Keys, as generate's options: prompt | tokens, max_new_tokens, do_sample,
greedy, temp, top_k, top_p, min_p, repetition_penalty, seed, ignore_eos,
stop (a string or a list), draft_max, draft_min, draft_p_min, schedule,
confidence, prompt_lookup, ngram, show_special, parse_special. Keys not given
take the target's generation_config.json values.
Output, one JSON object per input line, in order:
  {"index": 0, "line": 1, "text": "...", "ids": [...], "stop": "eos", "stats": {...}}
or {"index": i, "line": N, "error": "..."} for a line that failed. Exit status
1 when any line failed.)";

struct Args {
  std::string model, assistant, prompts, out;
  std::size_t max_batch = 8, max_cache_mb = 0, early_exit = 0, tree_nodes = 0, tree_width = 4;
  std::string tree_shape;
  LoadArgs load;
  CLI::Option *o_model, *o_assistant, *o_prompts, *o_out, *o_early_exit, *o_tree_nodes, *o_tree_width,
      *o_tree_shape;
};

DraftLengthSchedule parse_schedule(const std::string& s, const std::string& where) {
  if (s == "constant") return DraftLengthSchedule::constant;
  if (s == "heuristic") return DraftLengthSchedule::heuristic;
  if (s == "heuristic_transient") return DraftLengthSchedule::heuristic_transient;
  if (s == "confidence") return DraftLengthSchedule::confidence;
  throw InvalidArgument(where + "schedule: \"" + s +
                        "\" is not one of constant, heuristic, heuristic_transient, confidence");
}

// One input line, parsed.
struct Line {
  std::size_t number = 0;  // 1-based line in the file
  BatchRequest request;
  std::string error;  // set: the line is bad
};

// The request of one JSON object; InvalidArgument naming the key at fault.
BatchRequest parse_request(const json& j) {
  if (!j.is_object())
    throw InvalidArgument("expected a JSON object, got " + std::string(j.type_name()));
  static const std::set<std::string> known = {
      "prompt",       "tokens",       "max_new_tokens", "do_sample",     "greedy",
      "temp",         "top_k",        "top_p",          "min_p",         "repetition_penalty",
      "seed",         "ignore_eos",   "stop",           "draft_max",     "draft_min",
      "draft_p_min",  "schedule",     "confidence",     "prompt_lookup", "ngram",
      "show_special", "parse_special"};
  for (const auto& [key, value] : j.items())
    if (!known.count(key)) throw InvalidArgument("unknown key \"" + key + "\"");
  auto get = [&]<class T>(const char* key, std::optional<T>& out) {
    if (!j.contains(key) || j[key].is_null()) return;
    const json& v = j[key];
    bool ok = false;
    if constexpr (std::is_same_v<T, bool>)
      ok = v.is_boolean();
    else if constexpr (std::is_floating_point_v<T>)
      ok = v.is_number();
    else if constexpr (std::is_integral_v<T>)
      ok = v.is_number_integer() && (std::is_signed_v<T> || v.get<std::int64_t>() >= 0);
    else
      ok = v.is_string();
    if (!ok) throw InvalidArgument("\"" + std::string(key) + "\": unexpected value " + v.dump());
    out = v.get<T>();
  };
  BatchRequest r;
  const bool has_prompt = j.contains("prompt"), has_tokens = j.contains("tokens");
  if (has_prompt == has_tokens)
    throw InvalidArgument("give exactly one of \"prompt\" and \"tokens\"");
  if (has_prompt) {
    if (!j["prompt"].is_string()) throw InvalidArgument("\"prompt\": expected a string");
    r.prompt = j["prompt"].get<std::string>();
  } else {
    const json& t = j["tokens"];
    if (!t.is_array() || t.empty())
      throw InvalidArgument("\"tokens\": expected a non-empty list of token ids");
    std::vector<Token> ids;
    for (const json& e : t) {
      if (!e.is_number_integer() || e.get<std::int64_t>() < 0 || e.get<std::int64_t>() > INT32_MAX)
        throw InvalidArgument("\"tokens\": " + e.dump() + " is not a token id");
      ids.push_back(static_cast<Token>(e.get<std::int64_t>()));
    }
    r.tokens = std::move(ids);
  }
  GenerateOptions& o = r.options;
  std::optional<std::size_t> max_new, top_k, draft_max, draft_min, lookup, ngram;
  std::optional<double> temp, top_p, min_p, rep, draft_p_min, confidence;
  std::optional<bool> do_sample, greedy, ignore_eos, show_special, parse_special;
  std::optional<std::uint64_t> seed;
  std::optional<std::string> schedule;
  get("max_new_tokens", max_new);
  get("top_k", top_k);
  get("draft_max", draft_max);
  get("draft_min", draft_min);
  get("prompt_lookup", lookup);
  get("ngram", ngram);
  get("temp", temp);
  get("top_p", top_p);
  get("min_p", min_p);
  get("repetition_penalty", rep);
  get("draft_p_min", draft_p_min);
  get("confidence", confidence);
  get("do_sample", do_sample);
  get("greedy", greedy);
  get("ignore_eos", ignore_eos);
  get("show_special", show_special);
  get("parse_special", parse_special);
  get("seed", seed);
  get("schedule", schedule);
  if (max_new) o.max_new_tokens = *max_new;
  if (top_k) o.top_k = *top_k;
  if (draft_max) o.num_assistant_tokens = *draft_max;
  if (draft_min) o.draft_min_tokens = *draft_min;
  if (lookup) o.prompt_lookup_num_tokens = *lookup;
  if (ngram) o.max_matching_ngram_size = *ngram;
  // Sampling as generate's --greedy / --do-sample / --temp (0: greedy).
  const bool temp_zero = temp && *temp == 0.0;
  if (greedy.value_or(false) && do_sample.value_or(false))
    throw InvalidArgument("\"greedy\" and \"do_sample\" are alternatives");
  if (greedy.value_or(false) || temp_zero) {
    o.do_sample = false;
  } else if (do_sample.value_or(false) || temp) {
    o.do_sample = true;
    if (temp) o.temperature = static_cast<float>(*temp);
  } else if (do_sample) {
    o.do_sample = false;
  }
  if (top_p) o.top_p = static_cast<float>(*top_p);
  if (min_p) o.min_p = static_cast<float>(*min_p);
  if (rep) o.repetition_penalty = static_cast<float>(*rep);
  if (draft_p_min) o.draft_p_min = static_cast<float>(*draft_p_min);
  if (confidence) o.assistant_confidence_threshold = static_cast<float>(*confidence);
  if (seed) o.seed = *seed;
  if (schedule) o.schedule = parse_schedule(*schedule, "");
  if (ignore_eos.value_or(false)) o.eos_token_id = std::vector<Token>{};
  if (show_special.value_or(false)) o.skip_special_tokens = false;
  if (parse_special.value_or(false)) o.parse_special = true;
  if (j.contains("stop") && !j["stop"].is_null()) {
    std::vector<std::string> stops;
    const json& s = j["stop"];
    if (s.is_string()) {
      stops.push_back(s.get<std::string>());
    } else if (s.is_array()) {
      for (const json& e : s) {
        if (!e.is_string()) throw InvalidArgument("\"stop\": " + e.dump() + " is not a string");
        stops.push_back(e.get<std::string>());
      }
    } else {
      throw InvalidArgument("\"stop\": expected a string or a list of strings");
    }
    o.stop = std::move(stops);
  }
  return r;
}

std::vector<Line> read_lines(const std::string& path) {
  // A regular file of at most 64 MiB (a FIFO or device is refused, not read).
  // Under mpirun, rank 0 reads it and sends it to the others.
  std::istringstream in(
      same_on_every_rank(primary_rank() ? read_input_file(path, "--prompts") : std::string()));
  std::vector<Line> lines;
  std::string text;
  for (std::size_t number = 1; std::getline(in, text); ++number) {
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (text.find_first_not_of(" \t") == std::string::npos) continue;
    Line l;
    l.number = number;
    try {
      l.request = parse_request(json::parse(text));
    } catch (const json::exception& e) {
      l.error = std::string("not valid JSON: ") + e.what();
    } catch (const Error& e) {
      l.error = e.what();
    }
    lines.push_back(std::move(l));
  }
  return lines;
}

std::string what(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  }
}

json stats_of(const GenerationStats& s, bool assisted) {
  json j = {{"prompt_tokens", s.prompt_tokens},
            {"new_tokens", s.new_tokens},
            {"target_calls", s.target_calls},
            {"seconds", s.total_seconds}};
  if (assisted) {
    j["drafted"] = s.drafted;
    j["accepted"] = s.accepted;
    j["acceptance_rate"] = s.acceptance_rate();
    j["draft_calls"] = s.draft_calls;
  }
  return j;
}

SpecialTokens special_tokens(const ModelConfig& c) {
  SpecialTokens t;
  t.eos_token_ids = c.eos_token_ids;
  if (!c.bos_token_ids.empty()) t.bos_token_id = c.bos_token_ids.front();
  return t;
}

int run(const Args& a) {
  require_option(a.o_model);
  require_option(a.o_prompts);
  if (a.max_batch == 0) throw UsageError("--max-batch must be at least 1");
  if (given(a.o_assistant) && given(a.o_early_exit))
    throw UsageError("-a/--assistant and --early-exit are alternatives: give one");
  check_tree_combination(a.o_tree_nodes, a.o_tree_width, a.o_tree_shape, given(a.o_assistant));
  a.load.check_draft(given(a.o_assistant));
  std::vector<Line> lines = read_lines(a.prompts);
  const std::size_t n = lines.size();
  if (given(a.o_early_exit))  // self-speculation for every line
    for (Line& l : lines) l.request.options.assistant_early_exit = a.early_exit;
  std::FILE* out = stdout;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> out_file(nullptr, &std::fclose);
  if (given(a.o_out) && primary_rank()) {  // under mpirun, rank 0 writes
    out_file.reset(std::fopen(a.out.c_str(), "wb"));
    if (!out_file) throw IoError("cannot write " + a.out);
    out = out_file.get();
  }

  const LoadModelOptions lo = a.load.options();
  const std::filesystem::path dir(a.model);
  const bool text_mode =
      dir.extension() == ".gguf" || std::filesystem::exists(dir / "tokenizer.json");
  BatchGenerateOptions batch{.max_batch = a.max_batch, .max_cache_bytes = a.max_cache_mb << 20};
  batch.tree_nodes = a.tree_nodes;  // tree drafts for every sequence (-a)
  batch.tree_width = a.tree_width;
  if (given(a.o_tree_shape)) batch.tree_shape = parse_tree_shape(a.tree_shape);

  // Per line: text (text mode), ids, stop reason, stats, assisted, error.
  std::vector<std::optional<std::string>> texts(n);
  std::vector<std::vector<Token>> ids(n);
  std::vector<StopReason> stops(n, StopReason::max_new_tokens);
  std::vector<GenerationStats> stats(n);
  std::vector<bool> assisted(n, false);
  std::vector<std::string> errors(n);
  for (std::size_t i = 0; i < n; ++i) errors[i] = lines[i].error;
  std::vector<std::size_t> run_index;  // lines that go to the engine
  BatchStats agg;
  double seconds = 0.0;

  if (text_mode) {
    LoadModelOptions target_lo = lo;
    target_lo.tensor_parallel = target_group();  // under mpirun: split; the draft runs whole
    const Model target = load_model(dir, target_lo);
    announce_split(target);
    std::optional<Model> draft;
    if (given(a.o_assistant)) draft = load_model(a.assistant, a.load.draft_options());
    std::vector<BatchRequest> requests;
    for (std::size_t i = 0; i < n; ++i)
      if (errors[i].empty()) {
        run_index.push_back(i);
        requests.push_back(lines[i].request);
      }
    const BatchTextResult r = target.generate_batch(requests, draft ? &*draft : nullptr, batch);
    for (std::size_t k = 0; k < run_index.size(); ++k) {
      const std::size_t i = run_index[k];
      if (r.errors[k]) {
        errors[i] = what(r.errors[k]);
        continue;
      }
      texts[i] = r.results[k].text;
      ids[i] = r.results[k].tokens;
      stops[i] = r.results[k].stop_reason;
      stats[i] = r.results[k].stats;
      assisted[i] = r.results[k].assistance != Assistance::none;
    }
    agg = r.stats;
    seconds = r.seconds;
  } else {
    // No tokenizer: token lines only, resolved as `generate --tokens` does.
    GenerateOptions defaults;
    if (std::filesystem::exists(dir / "generation_config.json"))
      defaults = GenerateOptions::load_generation_config(dir / "generation_config.json");
    cpu::LoadOptions co;
    co.threads = a.load.threads;
    auto load = [&](const std::string& d, std::shared_ptr<RankGroup> split,
                    std::optional<DType> dtype) {
      cpu::LoadOptions o = co;
      if (dtype) o.dtype = *dtype;
      o.tensor_parallel = std::move(split);
      return std::make_shared<const cpu::Transformer>(cpu::Transformer::load(d, o));
    };
    const auto t = load(a.model, target_group(), lo.dtype);  // under mpirun: split
    announce_split(*t);
    std::shared_ptr<const cpu::Transformer> d;
    if (given(a.o_assistant)) d = load(a.assistant, nullptr, a.load.draft_options().dtype);
    std::vector<BatchIdsRequest> requests;
    for (std::size_t i = 0; i < n; ++i) {
      if (!errors[i].empty()) continue;
      const BatchRequest& q = lines[i].request;
      try {
        if (!q.tokens)
          throw InvalidArgument("\"prompt\" needs a tokenizer.json beside the model (" + a.model +
                                "); give \"tokens\"");
        if (q.options.stop)
          throw InvalidArgument("\"stop\" needs a tokenizer (stop strings are matched in text)");
        if (q.options.skip_special_tokens || q.options.parse_special)
          throw InvalidArgument("\"show_special\" and \"parse_special\" need a tokenizer (text)");
        BatchIdsRequest r;
        r.prompt = *q.tokens;
        r.config = resolve_generation_config(defaults, q.options, r.prompt.size());
        r.early_exit = q.options.assistant_early_exit.value_or(0);
        r.config.target_special_tokens = special_tokens(t->config());
        if (q.options.eos_token_id)
          r.config.target_special_tokens->eos_token_ids.clear();
        else if (d)
          r.config.draft_special_tokens = special_tokens(d->config());
        requests.push_back(std::move(r));
        run_index.push_back(i);
      } catch (const Error& e) {
        errors[i] = e.what();
      }
    }
    const AnyModel target(t);
    const std::optional<AnyModel> draft = d ? std::optional<AnyModel>(AnyModel(d)) : std::nullopt;
    const BatchIdsResult r = generate_batch_ids(target, draft ? &*draft : nullptr, requests, batch);
    for (std::size_t k = 0; k < run_index.size(); ++k) {
      const std::size_t i = run_index[k];
      if (r.errors[k]) {
        errors[i] = what(r.errors[k]);
        continue;
      }
      ids[i] = r.results[k].tokens;
      stops[i] = r.results[k].stop_reason;
      stats[i] = r.results[k].stats;
      assisted[i] = r.assistance[k] != Assistance::none;
    }
    agg = r.stats;
    seconds = r.seconds;
  }

  std::size_t failed = 0;
  for (std::size_t i = 0; i < n; ++i) {
    json j = {{"index", i}, {"line", lines[i].number}};
    if (!errors[i].empty()) {
      ++failed;
      j["error"] = errors[i];
      if (primary_rank())
        std::fprintf(stderr, "assistgen batch: %s:%zu: %s\n", a.prompts.c_str(), lines[i].number,
                     errors[i].c_str());
    } else {
      if (texts[i]) j["text"] = *texts[i];
      j["ids"] = ids[i];
      j["stop"] = std::string(stop_reason_name(stops[i]));
      j["stats"] = stats_of(stats[i], assisted[i]);
    }
    std::fprintf(out, "%s\n", j.dump().c_str());
  }
  std::fflush(out);
  if (!primary_rank()) return failed ? 1 : 0;  // rank 0 reports
  std::fprintf(
      stderr,
      "batch: %zu sequences (%zu failed), %zu new tokens in %.3f s: %.1f tokens/s; %zu rounds, "
      "mean batch %.2f (max %zu)",
      n, failed, agg.new_tokens, seconds, seconds > 0 ? double(agg.new_tokens) / seconds : 0.0,
      agg.rounds, agg.mean_batch(), agg.max_batch_seen);
  if (agg.drafted > 0 && batch.trees())
    std::fprintf(
        stderr,
        "; tree: nodes verified per pass %.2f, mean accepted depth %.2f, tokens per target pass "
        "%.2f",
        agg.sequence_rounds ? double(agg.drafted) / double(agg.sequence_rounds) : 0.0,
        agg.sequence_rounds ? double(agg.accepted) / double(agg.sequence_rounds) : 0.0,
        agg.sequence_rounds ? double(agg.new_tokens) / double(agg.sequence_rounds) : 0.0);
  else if (agg.drafted > 0)
    std::fprintf(stderr, "; drafted %zu, accepted %zu, acceptance %.3f", agg.drafted, agg.accepted,
                 agg.acceptance_rate());
  std::fprintf(stderr,
               "\nbatch time: target %.3f s, draft %.3f s, outside the models %.3f s (%.1f%%)\n",
               agg.target_seconds, agg.draft_seconds, agg.overhead_seconds(),
               agg.step_seconds > 0 ? 100.0 * agg.overhead_seconds() / agg.step_seconds : 0.0);
  return failed ? 1 : 0;
}

}  // namespace

Command add_batch(CLI::App& app) {
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand(
      "batch", "generate for every line of a JSONL file, sequences batched together");
  sub->description(kDescription);
  a->o_model = sub->add_option("-m,--model", a->model,
                               "target model: HF directory or .gguf file (required)");
  a->o_assistant =
      sub->add_option("-a,--assistant", a->assistant, "draft (assistant) model for every sequence");
  a->o_prompts =
      sub->add_option("--prompts", a->prompts, "input: one JSON object per line (required)");
  a->o_out = sub->add_option("--out", a->out, "output JSONL file (default: stdout)");
  a->o_early_exit = sub->add_option("--early-exit", a->early_exit,
                                    "self-speculation: the target's first E layers draft for every "
                                    "sequence (not with -a or prompt_lookup)")
                        ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20));
  sub->add_option("--max-batch", a->max_batch, "sequences verified together per round")
      ->check(CLI::Range(std::size_t{1}, std::size_t{4096}))
      ->capture_default_str();
  sub->add_option("--max-cache-mb", a->max_cache_mb,
                  "bound on the KV caches in MiB (0: none); sequences wait for room")
      ->capture_default_str();
  a->load.add_to(*sub);
  add_tree_options(*sub, a->tree_nodes, a->tree_width, a->tree_shape, a->o_tree_nodes,
                   a->o_tree_width, a->o_tree_shape);
  return {sub, [a] { return run(*a); }};
}

}  // namespace assistgen::cli
