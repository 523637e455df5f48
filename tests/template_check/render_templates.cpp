// render_templates: renders chat templates with assistgen's Jinja engine, for
// tools/chat_template_goldens/check_templates.mjs, which renders the same
// templates with @huggingface/jinja and compares the two byte for byte.
//
//   render_templates MANIFEST.json CONVERSATIONS.json > results.json
//
// MANIFEST.json is {name: {"file", "bos_token", "eos_token"}} (files relative
// to the manifest's folder), as tests/data/templates/templates.json. Each
// template is rendered through ChatTemplate (the path Model::chat takes) on
// every conversation, with add_generation_prompt off and on, with the context
// make_goldens.mjs gives the oracle: every key of the conversation
// ("messages", "tools", ...), add_generation_prompt, bos_token and eos_token
// (also when empty), and the clock fixed at 2025-01-15 10:30. The output is
// {name: {"parse_error": MESSAGE}} or {name: {"cases": {conversation: [OFF,
// ON]}}}, each result {"text": T}, {"raised": MESSAGE} (the template's
// raise_exception) or {"error": MESSAGE} (any other failure).
#include <assistgen/chat_template.hpp>
#include <assistgen/error.hpp>
#include <assistgen/jinja.hpp>
#include <ctime>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>

namespace {

using assistgen::jinja::Value;
using Json = nlohmann::ordered_json;

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw assistgen::IoError(p.string() + ": cannot be read");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Json render_one(const assistgen::ChatTemplate& t, const Value& conv, bool agp,
                const std::string& bos, const std::string& eos) {
  assistgen::ChatRenderOptions o;
  o.add_generation_prompt = agp;
  // The clock of make_goldens.mjs: 2025-01-15 10:30.
  std::tm tm{};
  tm.tm_year = 125;
  tm.tm_mday = 15;
  tm.tm_hour = 10;
  tm.tm_min = 30;
  o.render.now = tm;
  // Like the oracle's context: the conversation's keys, then the tokens
  // (defined even when empty, as the oracle passes them).
  Value extra = Value::object();
  for (const auto& [key, value] : conv.as_object().entries()) {
    if (key == "messages") continue;
    if (key == "tools")
      o.tools = value;
    else
      extra.set(key, value);
  }
  extra.set("bos_token", bos);
  extra.set("eos_token", eos);
  o.extra = extra;
  const Value* messages = conv.find("messages");
  try {
    return Json{{"text", t.render(messages ? *messages : Value::array(), o).text}};
  } catch (const assistgen::jinja::TemplateRaised& e) {
    return Json{{"raised", e.message()}};
  } catch (const std::exception& e) {
    return Json{{"error", e.what()}};
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: render_templates MANIFEST.json CONVERSATIONS.json\n";
    return 2;
  }
  try {
    const std::filesystem::path manifest_path = argv[1];
    const Json manifest = Json::parse(read_text(manifest_path));
    const Value convs = Value::parse_json(read_text(argv[2]), argv[2]);
    if (!manifest.is_object() || !convs.is_object())
      throw assistgen::FormatError(
          "render_templates: the manifest and the conversations must be "
          "JSON objects");
    Json out = Json::object();
    for (const auto& [name, spec] : manifest.items()) {
      auto token = [&](const char* key) {
        if (!spec.contains(key)) return std::string();
        if (!spec[key].is_string())
          throw assistgen::FormatError(manifest_path.string() + ": \"" + name + "\": " + key +
                                       " must be a string");
        return spec[key].get<std::string>();
      };
      if (!spec.is_object() || !spec.contains("file") || !spec["file"].is_string())
        throw assistgen::FormatError(manifest_path.string() + ": \"" + name +
                                     "\" needs a \"file\" (a string)");
      const std::string bos = token("bos_token"), eos = token("eos_token");
      const std::filesystem::path file =
          manifest_path.parent_path() / spec["file"].get<std::string>();
      std::optional<assistgen::ChatTemplate> t;
      try {
        t.emplace(assistgen::ChatTemplate::from_string(read_text(file), bos, eos, name));
      } catch (const assistgen::jinja::TemplateError& e) {
        out[name] = Json{{"parse_error", e.what()}};
        continue;
      }
      Json cases = Json::object();
      for (const auto& [conv_name, conv] : convs.as_object().entries())
        cases[conv_name] = Json::array(
            {render_one(*t, conv, false, bos, eos), render_one(*t, conv, true, bos, eos)});
      out[name] = Json{{"cases", std::move(cases)}};
    }
    // Invalid UTF-8 in a rendering is written as U+FFFD: JavaScript strings
    // cannot hold it either, so such a rendering shows as a difference.
    std::cout << out.dump(-1, ' ', false, Json::error_handler_t::replace) << "\n";
  } catch (const std::exception& e) {
    std::cerr << "render_templates: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
