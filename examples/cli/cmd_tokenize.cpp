// assistgen tokenize: text -> token ids with a model's tokenizer.json.
#include <cstdio>
#include <string>

#include "args.hpp"
#include "assistgen/tokenizer.hpp"
#include "commands.hpp"

namespace assistgen::cli {

namespace {

constexpr const char* kHelp =
    R"(usage: assistgen tokenize -m DIR -p TEXT [--pieces] [--no-special] [--parse-special]

Encodes TEXT with the tokenizer of DIR (a model directory holding
tokenizer.json, or a tokenizer.json file) exactly as generate -p encodes a
prompt, and prints the ids comma-separated on one line.

  -m, --model DIR       model directory or tokenizer.json
  -p, --prompt TEXT     the text to encode
      --pieces          then one line per token: id, a tab, the token string
                        as stored in the vocabulary (byte-level / metaspace form)
      --no-special      do not add special tokens (BOS) around the text
      --parse-special   match special-token text such as "<|endoftext|>" in
                        TEXT as single tokens (off: it stays text)
)";

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

}  // namespace

const char* tokenize_help() { return kHelp; }

int run_tokenize(const std::vector<std::string>& argv) {
  Args a(argv, {"--model", "--prompt"}, {"--pieces", "--no-special", "--parse-special"},
         {{"-m", "--model"}, {"-p", "--prompt"}});
  const std::string dir = a.require("--model");
  const std::string text = a.require("--prompt");
  const Tokenizer tok = Tokenizer::load(dir);
  const auto ids = tok.encode(text, {.add_special_tokens = !a.flag("--no-special"),
                                     .parse_special = a.flag("--parse-special")});
  std::string line;
  for (std::size_t i = 0; i < ids.size(); ++i) line += (i ? "," : "") + std::to_string(ids[i]);
  std::printf("%s\n", line.c_str());
  if (a.flag("--pieces"))
    for (Token id : ids)
      std::printf("%d\t%s\n", static_cast<int>(id), printable(tok.id_to_token(id)).c_str());
  return 0;
}

}  // namespace assistgen::cli
