// assistgen chat: an interactive conversation with a chat model (ChatSession:
// the KV caches are kept between turns, so a turn prefills only what it
// adds), optionally assisted; and assistgen template: a conversation rendered
// by a model's chat template, printed exactly, for checking templates.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

#include "assistgen/chat.hpp"
#include "assistgen/chat_template.hpp"
#include "assistgen/generate.hpp"
#include "commands.hpp"

namespace assistgen::cli {

namespace {

constexpr const char* kChatDescription =
    R"(Type a message and press Enter; the reply streams as it is generated,
followed by the turn's stats. Commands: /reset starts the conversation over
(the system message stays), /stats prints the session's totals, /quit or the
end of input (Ctrl-D) quits. The conversation is rendered with the model's
chat template (tokenizer_config.json's chat_template or chat_template.jinja),
or with --template FILE. Each turn re-renders the whole conversation and
feeds the target only the tokens its cache does not hold yet.
Options not given take the target's generation_config.json values.)";

struct ChatArgs {
  std::string model, assistant, system, template_file;
  std::vector<std::string> stop;
  std::size_t max_new_tokens = 256, draft_max = 5, prompt_lookup = 0, context = 0, early_exit = 0;
  LoadArgs load;
  std::int64_t seed = 0;
  double temp = 1.0;
  bool greedy = false;
  CLI::Option *o_model, *o_assistant, *o_max_new, *o_draft_max, *o_lookup, *o_stop,
      *o_temp, *o_greedy, *o_seed, *o_early_exit;
};

struct Totals {
  std::size_t turns = 0, new_tokens = 0, prefilled = 0, reused = 0, drafted = 0, accepted = 0;
  double seconds = 0.0;
};

void print_turn_stats(const TextResult& r, bool assisted) {
  const GenerationStats& s = r.stats;
  const std::size_t prefilled = r.prompt_tokens.size() - s.reused_tokens;
  std::printf("[%zu tokens, %.1f tokens/s, stop: %s, prompt %zu tokens: %zu prefilled, %zu reused",
              s.new_tokens, s.total_seconds > 0 ? double(s.new_tokens) / s.total_seconds : 0.0,
              std::string(stop_reason_name(r.stop_reason)).c_str(), r.prompt_tokens.size(),
              prefilled, s.reused_tokens);
  if (assisted)
    std::printf(", acceptance %.3f (%zu/%zu), %.2f tokens per target call", s.acceptance_rate(),
                s.accepted, s.drafted, s.tokens_per_target_call());
  std::printf("]\n");
}

int run_chat(const ChatArgs& a) {
  require_option(a.o_model);
  if (given(a.o_assistant) && given(a.o_lookup) && a.prompt_lookup > 0)
    throw UsageError("--assistant and --prompt-lookup are alternatives: give one");
  if (given(a.o_early_exit) && (given(a.o_assistant) || (given(a.o_lookup) && a.prompt_lookup > 0)))
    throw UsageError("--early-exit (the target drafts for itself) and " +
                     std::string(given(a.o_assistant) ? "--assistant" : "--prompt-lookup") +
                     " are alternatives: give one");
  a.load.check_draft(given(a.o_assistant));
  require_with(a.o_draft_max, given(a.o_assistant) || given(a.o_early_exit),
               "applies only with a draft model (-a or --early-exit)");
  if (a.greedy && given(a.o_temp) && a.temp != 0.0)
    throw UsageError("--greedy and --temp are alternatives");
  ChatSessionOptions so;
  so.system = a.system;
  so.context = a.context;
  GenerateOptions& o = so.generate;
  if (given(a.o_max_new)) o.max_new_tokens = a.max_new_tokens;
  if (given(a.o_draft_max)) o.num_assistant_tokens = a.draft_max;
  if (given(a.o_lookup)) o.prompt_lookup_num_tokens = a.prompt_lookup;
  if (given(a.o_early_exit)) o.assistant_early_exit = a.early_exit;
  if (given(a.o_stop)) o.stop = a.stop;
  if (a.greedy || (given(a.o_temp) && a.temp == 0.0)) {
    o.do_sample = false;
  } else if (given(a.o_temp)) {
    o.do_sample = true;
    o.temperature = static_cast<float>(a.temp);
  }
  if (given(a.o_seed)) o.seed = static_cast<std::uint64_t>(a.seed);

  // The template first: a model without one fails before its weights load.
  ChatTemplate chat_template = load_template(a.model, a.template_file);
  const LoadModelOptions lo = a.load.options();
  const Model target =
      load_with_progress(a.model, lo).with_chat_template(std::move(chat_template));
  std::optional<Model> draft;
  if (given(a.o_assistant)) draft.emplace(load_with_progress(a.assistant, a.load.draft_options()));
  ChatSession session = draft ? ChatSession(target, *draft, so) : ChatSession(target, so);

  const bool tty = ::isatty(STDIN_FILENO) != 0;
  if (tty)
    std::printf("assistgen chat: %s%s%s, context %zu tokens. /reset, /stats, /quit (or Ctrl-D).\n",
                a.model.c_str(), draft ? " assisted by " : "", draft ? a.assistant.c_str() : "",
                session.context());
  Totals totals;
  std::string line;
  for (;;) {
    if (tty) std::printf("> ");
    std::fflush(stdout);
    if (!std::getline(std::cin, line)) break;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    if (line == "/quit" || line == "/exit") break;
    if (line == "/reset") {
      session.reset();
      std::printf("[conversation reset]\n");
      continue;
    }
    if (line == "/stats") {
      std::printf(
          "[session: %zu turns, %zu new tokens in %.3f s (%.1f tokens/s), %zu tokens "
          "prefilled, %zu reused from the cache",
          totals.turns, totals.new_tokens, totals.seconds,
          totals.seconds > 0 ? double(totals.new_tokens) / totals.seconds : 0.0, totals.prefilled,
          totals.reused);
      if (totals.drafted)
        std::printf(", acceptance %.3f (%zu/%zu)", double(totals.accepted) / double(totals.drafted),
                    totals.accepted, totals.drafted);
      std::printf(", %zu messages, context %zu tokens]\n", session.messages().size(),
                  session.context());
      continue;
    }
    if (line[0] == '/' && line.find(' ') == std::string::npos) {
      std::printf("[unknown command %s: /reset, /stats, /quit]\n", line.c_str());
      continue;
    }
    TextResult r;
    try {
      r = session.send(line, [](std::string_view piece) {
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
        return true;
      });
    } catch (const CapacityError& e) {
      // The conversation outgrew the context: say so and keep the loop.
      std::printf("\n[%s]\n", e.what());
      continue;
    }
    std::printf("\n");
    print_turn_stats(r, r.assistance != Assistance::none);
    ++totals.turns;
    totals.new_tokens += r.stats.new_tokens;
    totals.prefilled += r.prompt_tokens.size() - r.stats.reused_tokens;
    totals.reused += r.stats.reused_tokens;
    totals.drafted += r.stats.drafted;
    totals.accepted += r.stats.accepted;
    totals.seconds += r.stats.total_seconds;
  }
  if (tty) std::printf("\n");
  return 0;
}

struct TemplateArgs {
  std::string model, messages, template_file;
  bool add_generation_prompt = false;
  CLI::Option *o_model, *o_messages;
};

int run_template(const TemplateArgs& a) {
  require_option(a.o_model);
  require_option(a.o_messages);
  const std::string text = read_input_file(a.messages, "--messages");
  const ChatTemplate t = load_template(a.model, a.template_file);
  // A list of messages, or {"messages": [...], "tools": [...], ...} whose
  // other fields become template variables.
  const jinja::Value doc = jinja::Value::parse_json(text, a.messages);
  ChatRenderOptions ro;
  ro.add_generation_prompt = a.add_generation_prompt;
  jinja::Value messages = doc;
  if (doc.is_object()) {
    const jinja::Value* m = doc.find("messages");
    if (!m)
      throw FormatError(a.messages +
                        ": expected a list of messages, or an object with \"messages\"");
    messages = *m;
    jinja::Value extra = jinja::Value::object();
    for (const auto& [key, value] : doc.as_object().entries()) {
      if (key == "messages") continue;
      if (key == "tools")
        ro.tools = value;
      else
        extra.set(key, value);
    }
    ro.extra = extra;
  }
  if (!messages.is_array())
    throw FormatError(a.messages +
                      ": \"messages\" must be a list of {\"role\", \"content\"} objects");
  const ChatPrompt p = t.render(messages, ro);
  std::fwrite(p.text.data(), 1, p.text.size(), stdout);
  return 0;
}

}  // namespace

Command add_chat(CLI::App& app) {
  auto a = std::make_shared<ChatArgs>();
  CLI::App* sub = app.add_subcommand(
      "chat",
      "an interactive conversation with a chat model, optionally assisted by a draft model");
  sub->footer(kChatDescription);
  a->o_model = sub->add_option("-m,--model", a->model, "target model directory (required)");
  a->o_assistant =
      sub->add_option("-a,--assistant", a->assistant, "draft (assistant) model directory");
  sub->add_option("--system", a->system, "system message the conversation starts with");
  sub->add_option("--template", a->template_file,
                  "chat template file (Jinja), for a model without one or to replace its own");
  a->o_max_new =
      sub->add_option("-n,--max-new-tokens", a->max_new_tokens, "tokens per reply at most")
          ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 24));
  a->o_draft_max =
      sub->add_option("--draft-max", a->draft_max, "drafted tokens per round (-a only)")
          ->check(CLI::Range(std::size_t{1}, std::size_t{128}));
  a->o_early_exit = sub->add_option("--early-exit", a->early_exit,
                                    "self-speculation: the target's first E layers draft on its own "
                                    "KV cache (not with -a or --prompt-lookup)")
                        ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20));
  a->o_lookup = sub->add_option("--prompt-lookup", a->prompt_lookup,
                                "propose N tokens per round by n-gram lookup, no draft (0: off)")
                    ->check(CLI::Range(std::size_t{0}, std::size_t{128}));
  sub->add_option("--context", a->context,
                  "positions of the KV caches for the whole conversation (0: the model's "
                  "max_position_embeddings, at most 4096)")
      ->check(CLI::Range(std::size_t{0}, std::size_t{1} << 24))
      ->capture_default_str();
  a->o_stop = add_stop_option(*sub, a->stop);
  a->o_temp = sub->add_option("--temp", a->temp, "sampling temperature; > 0 samples, 0 is greedy")
                  ->check(CLI::Range(0.0, 1e6));
  a->o_greedy =
      sub->add_flag("--greedy", a->greedy, "greedy decoding whatever generation_config.json says");
  a->o_seed = sub->add_option("--seed", a->seed, "RNG seed of every turn")
                  ->check(CLI::Range(std::int64_t{0}, INT64_MAX));
  a->load.add_to(*sub);
  return {sub, [a] { return run_chat(*a); }};
}

Command add_template(CLI::App& app) {
  auto a = std::make_shared<TemplateArgs>();
  CLI::App* sub = app.add_subcommand(
      "template", "print a conversation as the model's chat template renders it, exactly");
  sub->footer(
      "--messages FILE: a JSON list of {\"role\", \"content\", ...} messages, or an object with "
      "\"messages\" and optionally \"tools\" and further template variables. Only the model's "
      "tokenizer_config.json (or chat_template.jinja) is read, no weights. The rendered text is "
      "written as is, with no newline added.");
  a->o_model = sub->add_option("-m,--model", a->model, "model directory (required)");
  a->o_messages =
      sub->add_option("--messages", a->messages, "JSON file of the conversation (required)");
  sub->add_option("--template", a->template_file,
                  "chat template file (Jinja) instead of the model's");
  sub->add_flag("--add-generation-prompt", a->add_generation_prompt,
                "end with the header of an assistant turn (as for generating a reply)");
  return {sub, [a] { return run_template(*a); }};
}

}  // namespace assistgen::cli
