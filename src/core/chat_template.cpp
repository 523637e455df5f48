// ChatTemplate: a model's chat template loaded from its directory, rendered
// with Hugging Face's variables, and the rendered prompt tokenized with the
// messages' text kept literal (include/assistgen/chat_template.hpp).
#include <assistgen/chat_template.hpp>
#include <assistgen/error.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace assistgen {

namespace {

using json = nlohmann::json;

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw IoError(p.string() + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw IoError(p.string() + ": read failed");
  return ss.str();
}

json read_config(const std::filesystem::path& p) {
  try {
    return json::parse(read_file(p));
  } catch (const json::exception& e) {
    throw FormatError(p.string() + ": malformed JSON: " + e.what());
  }
}

// bos_token etc.: a string, {"content": ...} (AddedToken), or null.
std::optional<std::string> token_string(const json& cfg, const char* key,
                                        const std::filesystem::path& file) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    auto c = it->find("content");
    if (c != it->end() && c->is_string()) return c->get<std::string>();
  }
  throw FormatError(file.string() + ": " + key +
                    " must be a string or an object with a string \"content\"");
}

// Every string of a (messages) value marked as user text.
jinja::Value mark_user(const jinja::Value& v) {
  switch (v.kind()) {
    case jinja::Value::Kind::string:
      return jinja::Value::user_text(v.as_string());
    case jinja::Value::Kind::array: {
      jinja::Array out;
      out.reserve(v.as_array().size());
      for (const auto& e : v.as_array()) out.push_back(mark_user(e));
      return jinja::Value(std::move(out));
    }
    case jinja::Value::Kind::object: {
      jinja::Object out;
      for (const auto& [k, e] : v.as_object().entries()) out.set(k, mark_user(e));
      return jinja::Value(std::move(out));
    }
    default:
      return v;
  }
}

}  // namespace

bool ChatTemplate::available(const std::filesystem::path& dir) {
  std::error_code ec;
  if (std::filesystem::exists(dir / "chat_template.jinja", ec)) return true;
  if (!std::filesystem::exists(dir / "tokenizer_config.json", ec)) return false;
  const json cfg = read_config(dir / "tokenizer_config.json");
  auto it = cfg.find("chat_template");
  return it != cfg.end() && !it->is_null();
}

ChatTemplate ChatTemplate::from_string(std::string_view source, std::string bos_token,
                                       std::string eos_token, std::string origin) {
  ChatTemplate t;
  t.templates_.emplace_back("default", jinja::Template::parse(source, std::move(origin)));
  t.bos_ = std::move(bos_token);
  t.eos_ = std::move(eos_token);
  if (!t.bos_.empty()) t.specials_.set("bos_token", t.bos_);
  if (!t.eos_.empty()) t.specials_.set("eos_token", t.eos_);
  return t;
}

ChatTemplate ChatTemplate::from_string_for(std::string_view source,
                                           const std::filesystem::path& dir, std::string origin) {
  ChatTemplate t = from_string(source, {}, {}, std::move(origin));
  const auto cfg_path = dir / "tokenizer_config.json";
  std::error_code ec;
  if (!std::filesystem::exists(cfg_path, ec)) return t;
  const json cfg = read_config(cfg_path);
  if (!cfg.is_object()) throw FormatError(cfg_path.string() + ": expected a JSON object");
  for (const char* key : {"bos_token", "eos_token", "unk_token", "pad_token"})
    if (auto s = token_string(cfg, key, cfg_path)) t.specials_.set(key, *s);
  if (auto b = token_string(cfg, "bos_token", cfg_path)) t.bos_ = *b;
  if (auto e = token_string(cfg, "eos_token", cfg_path)) t.eos_ = *e;
  return t;
}

ChatTemplate ChatTemplate::load(const std::filesystem::path& dir) {
  std::error_code ec;
  const auto jinja_path = dir / "chat_template.jinja";
  if (std::filesystem::exists(jinja_path, ec))
    return from_string_for(read_file(jinja_path), dir, jinja_path.string());
  const auto cfg_path = dir / "tokenizer_config.json";
  if (!std::filesystem::exists(cfg_path, ec))
    throw ConfigError(dir.string() +
                      ": no chat template (neither chat_template.jinja nor tokenizer_config.json); "
                      "supply one (--template FILE)");
  const json cfg = read_config(cfg_path);
  if (!cfg.is_object()) throw FormatError(cfg_path.string() + ": expected a JSON object");
  auto it = cfg.find("chat_template");
  if (it == cfg.end() || it->is_null())
    throw ConfigError(cfg_path.string() +
                      ": the model has no chat_template (a base model, or an old export); "
                      "supply one (--template FILE)");
  const std::string origin = cfg_path.string() + ": chat_template";
  if (it->is_string()) return from_string_for(it->get<std::string>(), dir, origin);
  if (!it->is_array())
    throw FormatError(origin + " must be a string or a list of {\"name\", \"template\"} objects");
  ChatTemplate t = from_string_for("", dir, origin);
  t.templates_.clear();
  for (std::size_t i = 0; i < it->size(); ++i) {
    const json& e = (*it)[i];
    const std::string where = origin + "[" + std::to_string(i) + "]";
    if (!e.is_object() || !e.contains("name") || !e["name"].is_string() ||
        !e.contains("template") || !e["template"].is_string())
      throw FormatError(where + " must be an object with string \"name\" and \"template\"");
    const std::string name = e["name"].get<std::string>();
    auto parsed =
        jinja::Template::parse(e["template"].get<std::string>(), origin + " '" + name + "'");
    if (name == "default")
      t.templates_.insert(t.templates_.begin(), {name, std::move(parsed)});
    else
      t.templates_.emplace_back(name, std::move(parsed));
  }
  if (t.templates_.empty()) throw FormatError(origin + " is an empty list");
  return t;
}

std::vector<std::string> ChatTemplate::names() const {
  std::vector<std::string> out;
  for (const auto& [n, t] : templates_) out.push_back(n);
  return out;
}

ChatPrompt ChatTemplate::render(const jinja::Value& messages,
                                const ChatRenderOptions& options) const {
  if (!messages.is_array())
    throw InvalidArgument("ChatTemplate::render: messages must be an array");
  if (!options.extra.is_undefined() && !options.extra.is_object())
    throw InvalidArgument("ChatTemplate::render: extra must be an object");
  const bool with_tools = options.tools.is_array() && !options.tools.as_array().empty();
  const jinja::Template* chosen = nullptr;
  for (const auto& [n, t] : templates_)
    if (with_tools && n == "tool_use") chosen = &t;
  if (!chosen) {
    for (const auto& [n, t] : templates_)
      if (n == "default") chosen = &t;
  }
  if (!chosen) {
    if (templates_.size() != 1) {
      std::string list;
      for (const auto& [n, t] : templates_) list += (list.empty() ? "" : ", ") + n;
      throw ConfigError("chat template: no template named \"default\" (have: " + list + ")");
    }
    chosen = &templates_.front().second;
  }
  jinja::Value ctx = specials_;
  ctx.set("messages", options.parse_special_in_messages ? messages : mark_user(messages));
  ctx.set("add_generation_prompt", options.add_generation_prompt);
  if (!options.tools.is_undefined()) ctx.set("tools", options.tools);
  if (options.extra.is_object())
    for (const auto& [k, v] : options.extra.as_object().entries()) ctx.set(k, v);
  jinja::MarkedText out = chosen->render_marked(ctx, options.render);
  ChatPrompt p;
  p.text = std::move(out.text);
  for (const auto& r : out.user) p.literal.push_back({r.begin, r.end});
  return p;
}

ChatPrompt ChatTemplate::render(const std::vector<ChatMessage>& messages,
                                const ChatRenderOptions& options) const {
  jinja::Value arr = jinja::Value::array();
  for (const auto& m : messages)
    arr.push_back(jinja::Value::object().set("role", m.role).set("content", m.content));
  return render(arr, options);
}

std::vector<Token> ChatTemplate::encode(const Tokenizer& tokenizer, const ChatPrompt& prompt) {
  return tokenizer.encode(
      prompt.text,
      {.add_special_tokens = false, .parse_special = true, .literal_ranges = prompt.literal});
}

}  // namespace assistgen
