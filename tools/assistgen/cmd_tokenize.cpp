// assistgen tokenize / detokenize: text <-> token ids with a model's tokenizer.json.
#include <cstdio>
#include <memory>
#include <string>

#include "assistgen/tokenizer.hpp"
#include "commands.hpp"

namespace assistgen::cli {

namespace {

// Control characters of a vocabulary string shown as \xNN so that a piece
// stays on its line.
std::string printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

struct TokenizeArgs {
  std::string model, prompt;
  bool pieces = false, no_special = false, parse_special = false;
  CLI::Option *o_model = nullptr, *o_prompt = nullptr;
};

struct DetokenizeArgs {
  std::string model, tokens;
  bool show_special = false;
  CLI::Option *o_model = nullptr, *o_tokens = nullptr;
};

}  // namespace

Command add_tokenize(CLI::App& app) {
  auto a = std::make_shared<TokenizeArgs>();
  CLI::App* sub = app.add_subcommand("tokenize", "token ids of a text with a model's tokenizer");
  sub->footer(
      "Encodes TEXT with the tokenizer of DIR exactly as generate -p encodes a prompt, and prints\n"
      "the ids comma-separated on one line.");
  a->o_model = sub->add_option("-m,--model", a->model,
                               "model directory holding tokenizer.json, or a tokenizer.json file "
                               "(required)");
  a->o_prompt = sub->add_option("-p,--prompt", a->prompt, "the text to encode (required)");
  sub->add_flag("--pieces", a->pieces,
                "then one line per token: id, a tab, the token string as stored in the vocabulary");
  sub->add_flag("--no-special", a->no_special, "do not add special tokens (BOS) around the text");
  sub->add_flag("--parse-special", a->parse_special,
                "match special-token text such as \"<|endoftext|>\" as single tokens (off: it "
                "stays text, as in generate -p without --parse-special)");
  return {
      sub, [a] {
        require_option(a->o_model);
        require_option(a->o_prompt);
        const Tokenizer tok = Tokenizer::load(a->model);
        const auto ids = tok.encode(
            a->prompt, {.add_special_tokens = !a->no_special, .parse_special = a->parse_special});
        std::string line;
        for (std::size_t i = 0; i < ids.size(); ++i)
          line += (i ? "," : "") + std::to_string(ids[i]);
        std::printf("%s\n", line.c_str());
        if (a->pieces)
          for (Token id : ids)
            std::printf("%d\t%s\n", static_cast<int>(id), printable(tok.id_to_token(id)).c_str());
        return 0;
      }};
}

Command add_detokenize(CLI::App& app) {
  auto a = std::make_shared<DetokenizeArgs>();
  CLI::App* sub =
      app.add_subcommand("detokenize", "the text of token ids with a model's tokenizer");
  sub->footer(
      "Decodes IDS with the tokenizer of DIR as generate -p decodes its output (special tokens\n"
      "skipped unless --show-special) and prints the text and a newline.");
  a->o_model = sub->add_option("-m,--model", a->model,
                               "model directory holding tokenizer.json, or a tokenizer.json file "
                               "(required)");
  a->o_tokens =
      sub->add_option("--tokens", a->tokens, "comma-separated token ids, e.g. 1,2,3 (required)");
  sub->add_flag("--show-special", a->show_special, "keep special tokens (EOS, ...) in the text");
  return {sub, [a] {
            require_option(a->o_model);
            require_option(a->o_tokens);
            const auto ids = parse_token_list(a->tokens);
            const Tokenizer tok = Tokenizer::load(a->model);
            const std::string text = tok.decode(ids, !a->show_special);
            std::fwrite(text.data(), 1, text.size(), stdout);
            std::printf("\n");
            return 0;
          }};
}

}  // namespace assistgen::cli
