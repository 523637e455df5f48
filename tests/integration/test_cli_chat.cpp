// assistgen chat and assistgen template end to end, and --stop of assistgen
// generate: a conversation through a pipe (replies, per-turn stats, /stats,
// /reset) equal to the library's ChatSession; the same on a terminal, under
// tmux (send-keys, capture-pane); a model without a chat template; the
// rendered prompt printed byte for byte as ChatTemplate renders it.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "assistgen/assistgen.hpp"
#include "integration/shell_run.hpp"
#include "test_skip.hpp"

namespace fs = std::filesystem;
using namespace assistgen;
using namespace shell_test;

namespace {

const std::string kCli = ASSISTGEN_CLI;
const fs::path kModels = ASSISTGEN_MODELS_DIR;
const fs::path kTemplates = fs::path(ASSISTGEN_TEST_DATA_DIR) / "templates";

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE(in.good());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

fs::path scratch_file(const std::string& name, const std::string& content) {
  const fs::path dir =
      fs::temp_directory_path() / ("assistgen_cli_chat_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path p = dir / name;
  std::ofstream(p, std::ios::binary) << content;
  return p;
}

struct Scratch {
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(fs::temp_directory_path() / ("assistgen_cli_chat_" + std::to_string(::getpid())),
                   ec);
  }
} scratch_cleanup;

const std::string kChatArgs = " chat -m " + (kModels / "kjv-target").string() + " -a " +
                              (kModels / "kjv-draft").string() + " --template " +
                              (kTemplates / "demo_chat.jinja").string() +
                              " --system 'The book of Genesis' -n 16 --greedy";

// The library's session with the options kChatArgs gives.
struct Reference {
  Model target, draft;
  ChatSession session;
  static Reference make() {
    const fs::path dir = kModels / "kjv-target";
    const Model t = load_model(dir).with_chat_template(ChatTemplate::from_string_for(
        read_text(kTemplates / "demo_chat.jinja"), dir, "demo_chat.jinja"));
    const Model d = load_model(kModels / "kjv-draft");
    ChatSession s(
        t, d,
        {.generate = {.max_new_tokens = 16, .do_sample = false}, .system = "The book of Genesis"});
    return {t, d, std::move(s)};
  }
};

std::string turn_stats(const TextResult& r) {
  return "prompt " + std::to_string(r.prompt_tokens.size()) +
         " tokens: " + std::to_string(r.prompt_tokens.size() - r.stats.reused_tokens) +
         " prefilled, " + std::to_string(r.stats.reused_tokens) + " reused, acceptance ";
}

// `needle` found in `hay` at or after `pos`; moves pos past it.
bool next(const std::string& hay, const std::string& needle, std::size_t& pos) {
  const std::size_t at = hay.find(needle, pos);
  if (at == std::string::npos) return false;
  pos = at + needle.size();
  return true;
}

}  // namespace

TEST_CASE("cli chat: a conversation through a pipe equals the library's session", "[cli][chat]") {
  const fs::path input = scratch_file("pipe.txt",
                                      "And God said\n/stats\nAnd the LORD spake unto Moses, "
                                      "saying\n\n/bogus\n/reset\nIn the beginning\n");
  const Run r = shell(kCli + kChatArgs + " < " + input.string() + " 2>&1");
  INFO(r.out);
  REQUIRE(r.code == 0);
  Reference ref = Reference::make();
  const TextResult t1 = ref.session.send("And God said");
  const TextResult t2 = ref.session.send("And the LORD spake unto Moses, saying");
  ref.session.reset();
  const TextResult t3 = ref.session.send("In the beginning");
  REQUIRE(t2.stats.reused_tokens > t1.prompt_tokens.size());
  // Not a terminal: no banner, no "> " prompts; each reply, then its stats.
  CHECK(r.out.rfind(t1.text + "\n[16 tokens, ", 0) == 0);
  std::size_t pos = 0;
  CHECK(next(r.out, turn_stats(t1), pos));
  CHECK(next(r.out, "[session: 1 turns, 16 new tokens", pos));
  CHECK(next(r.out, "\n" + t2.text + "\n[16 tokens, ", pos));
  CHECK(next(r.out, turn_stats(t2), pos));
  CHECK(next(r.out, "[unknown command /bogus: /reset, /stats, /quit]\n", pos));
  CHECK(next(r.out, "[conversation reset]\n" + t3.text + "\n[16 tokens, ", pos));
  CHECK(next(r.out, turn_stats(t3), pos));
  CHECK(r.out.find("> ") == std::string::npos);

  // The same options, --stop included, without a draft: the text stops there.
  const std::string stop = t1.text.substr(t1.text.size() / 2, 4);
  const Run s = shell(kCli + kChatArgs.substr(0, kChatArgs.find(" -a ")) +
                      kChatArgs.substr(kChatArgs.find(" --template")) + " --stop " + quote(stop) +
                      " < " + input.string() + " 2>&1");
  REQUIRE(s.code == 0);
  CHECK(s.out.rfind(t1.text.substr(0, t1.text.find(stop)) + "\n[", 0) == 0);
  CHECK(s.out.find("stop: stop_string") != std::string::npos);
}

TEST_CASE("cli chat: a model without a chat template, and bad command lines", "[cli][chat]") {
  Run r = shell(kCli + " chat -m " + (kModels / "kjv-target").string() + " < /dev/null 2>&1");
  CHECK(r.code == 1);
  CHECK(r.out.find("has no chat template") != std::string::npos);
  CHECK(r.out.find("--template FILE") != std::string::npos);
  r = shell(kCli + " chat < /dev/null 2>&1");
  CHECK(r.code == 2);
  CHECK(r.out.find("--model is required") != std::string::npos);
  r = shell(kCli + " chat -m " + (kModels / "kjv-target").string() +
            " --template /nonexistent.jinja < /dev/null 2>&1");
  CHECK(r.code == 2);
  CHECK(r.out.find("/nonexistent.jinja") != std::string::npos);
  const fs::path bad = scratch_file("bad.jinja", "{% if %}");
  r = shell(kCli + " chat -m " + (kModels / "kjv-target").string() + " --template " + bad.string() +
            " < /dev/null 2>&1");
  CHECK(r.code == 1);
  CHECK(r.out.find("bad.jinja") != std::string::npos);
  r = shell(kCli + " chat -m " + (kModels / "kjv-target").string() + " --stop '' < /dev/null 2>&1");
  CHECK(r.code == 2);
  r = shell(kCli + " generate -m " + (kModels / "kjv-target").string() +
            " --tokens 1,2 --stop x 2>&1");
  CHECK(r.code == 2);
  CHECK(r.out.find("--stop") != std::string::npos);
}

TEST_CASE("cli chat: on a terminal under tmux (send-keys, capture-pane)", "[cli][chat]") {
  if (shell("command -v tmux >/dev/null 2>&1").code != 0) ASSISTGEN_SKIP("tmux is not installed");
  const std::string sock = "assistgen_test_" + std::to_string(::getpid());
  const std::string tmux = "tmux -L " + sock + " ";
  struct Kill {
    std::string tmux;
    ~Kill() { (void)std::system((tmux + "kill-server >/dev/null 2>&1").c_str()); }
  } kill{tmux};
  const Run started = shell(tmux + "new-session -d -s chat -x 220 -y 60 " +
                            quote(kCli + kChatArgs + "; echo CHAT-EXITED $?; sleep 60") + " 2>&1");
  REQUIRE(started.code == 0);
  auto pane = [&] { return shell(tmux + "capture-pane -p -J -t chat -S -200").out; };
  auto wait_for = [&](const std::string& what) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      if (pane().find(what) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  };
  auto keys = [&](const std::string& k) {
    REQUIRE(shell(tmux + "send-keys -t chat " + k).code == 0);
  };
  REQUIRE(wait_for("/reset, /stats, /quit (or Ctrl-D).\n> "));
  Reference ref = Reference::make();
  keys("'And God said' Enter");
  const TextResult t1 = ref.session.send("And God said");
  REQUIRE(wait_for(turn_stats(t1)));
  keys("'And the LORD spake unto Moses, saying' Enter");
  const TextResult t2 = ref.session.send("And the LORD spake unto Moses, saying");
  REQUIRE(wait_for(turn_stats(t2)));
  keys("/stats Enter");
  REQUIRE(wait_for("[session: 2 turns, 32 new tokens"));
  keys("C-d");
  REQUIRE(wait_for("CHAT-EXITED 0"));
  const std::string screen = pane();
  INFO(screen);
  std::size_t pos = 0;
  CHECK(next(screen, "> And God said\n" + t1.text + "\n[16 tokens", pos));
  CHECK(next(screen, "> And the LORD spake unto Moses, saying\n" + t2.text + "\n[16 tokens", pos));
  CHECK(next(screen, "> /stats\n[session: 2 turns", pos));
}

TEST_CASE("cli template: prints the rendered prompt exactly", "[cli][chat]") {
  const std::string messages_json = R"([
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hi <|im_end|> there"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "And then?"}])";
  const fs::path messages = scratch_file("messages.json", messages_json);
  const fs::path model = kModels / "kjv-target";
  const fs::path qwen = kTemplates / "qwen25.jinja";
  const ChatTemplate t = ChatTemplate::from_string_for(read_text(qwen), model, qwen.string());
  const jinja::Value msgs = jinja::Value::parse_json(messages_json);
  for (const bool gen : {false, true}) {
    const Run r =
        shell(kCli + " template -m " + model.string() + " --template " + qwen.string() +
              " --messages " + messages.string() + (gen ? " --add-generation-prompt" : ""));
    REQUIRE(r.code == 0);
    CHECK(r.out == t.render(msgs, {.add_generation_prompt = gen}).text);
  }
  // An object with tools; a model directory whose tokenizer_config.json has
  // the template.
  const fs::path dir =
      fs::temp_directory_path() / ("assistgen_cli_chat_" + std::to_string(::getpid())) / "model";
  fs::create_directories(dir);
  {
    std::string cfg = read_text(model / "tokenizer_config.json");
    const std::string tmpl = read_text(qwen);
    std::string escaped;
    for (char c : tmpl) {
      if (c == '"' || c == '\\') escaped += '\\';
      if (c == '\n') {
        escaped += "\\n";
        continue;
      }
      escaped += c;
    }
    cfg.insert(cfg.find('{') + 1, "\n  \"chat_template\": \"" + escaped + "\",");
    std::ofstream(dir / "tokenizer_config.json", std::ios::binary) << cfg;
  }
  const std::string tools =
      R"([{"type": "function", "function": {"name": "get_time", "description": "The time", "parameters": {"type": "object", "properties": {}}}}])";
  const fs::path with_tools =
      scratch_file("tools.json", "{\"messages\": " + messages_json + ", \"tools\": " + tools + "}");
  const Run r = shell(kCli + " template -m " + dir.string() + " --messages " + with_tools.string() +
                      " --add-generation-prompt");
  REQUIRE(r.code == 0);
  CHECK(r.out ==
        ChatTemplate::load(dir)
            .render(msgs, {.add_generation_prompt = true, .tools = jinja::Value::parse_json(tools)})
            .text);
  CHECK(r.out.find("get_time") != std::string::npos);

  const fs::path bad = scratch_file("bad.json", R"({"conversation": []})");
  Run e = shell(kCli + " template -m " + dir.string() + " --messages " + bad.string() + " 2>&1");
  CHECK(e.code == 1);
  CHECK(e.out.find("bad.json") != std::string::npos);
  e = shell(kCli + " template -m " + model.string() + " --messages " + messages.string() + " 2>&1");
  CHECK(e.code == 1);
  CHECK(e.out.find("--template FILE") != std::string::npos);
}

TEST_CASE("cli generate: --stop cuts the text as the library does", "[cli][stop]") {
  const Model target = load_model(kModels / "kjv-target");
  const Model draft = load_model(kModels / "kjv-draft");
  const GenerateOptions o{.max_new_tokens = 40, .stop = std::vector<std::string>{"LORD", ", and"}};
  const TextResult lib = target.generate("And God said", o);
  REQUIRE(lib.stop_reason == StopReason::stop_string);
  for (const std::string& extra :
       std::vector<std::string>{"", " -a " + (kModels / "kjv-draft").string()}) {
    const Run r = shell(kCli + " generate -m " + (kModels / "kjv-target").string() +
                        " -p 'And God said' -n 40 --stop LORD --stop ', and'" + extra + " 2>&1");
    INFO(r.out);
    REQUIRE(r.code == 0);
    CHECK(r.out.rfind(lib.text + "\n\n", 0) == 0);
    CHECK(r.out.find("stop: stop_string") != std::string::npos);
  }
  CHECK(target.generate("And God said", draft, o).text == lib.text);
}
