// Reads tokenizer.json (plus tokenizer_config.json / generation_config.json)
// into Tokenizer::Impl, checking every field it uses: a malformed file is a
// FormatError naming the field, an unknown component an UnsupportedError.
#include <algorithm>
#include <assistgen/error.hpp>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "../io/json_file.hpp"
#include "../io/strict_json.hpp"
#include "assistgen/io/gguf.hpp"
#include "gguf_vocab.hpp"
#include "tokenizer_internal.hpp"

namespace assistgen {

namespace {

using nlohmann::json;
using namespace tok;

class Parser {
 public:
  explicit Parser(std::string origin) : origin_(std::move(origin)) {}

  [[noreturn]] void fail(const std::string& path, const std::string& msg) const {
    throw FormatError(origin_ + ": " + path + ": " + msg);
  }
  [[noreturn]] void unsupported(const std::string& path, const std::string& what) const {
    throw UnsupportedError(origin_ + ": " + path + ": " + what + " is not supported");
  }

  const json& field(const json& obj, const char* key, const std::string& path) const {
    if (!obj.is_object()) fail(path, "expected a JSON object");
    auto it = obj.find(key);
    if (it == obj.end()) fail(path + "." + key, "missing required field");
    return *it;
  }
  const json* optional(const json& obj, const char* key) const {
    auto it = obj.find(key);
    return it == obj.end() || it->is_null() ? nullptr : &*it;
  }
  std::string string_field(const json& obj, const char* key, const std::string& path) const {
    const json& v = field(obj, key, path);
    if (!v.is_string())
      fail(path + "." + key, "expected a string, got " + std::string(v.type_name()));
    return v.get<std::string>();
  }
  std::optional<std::string> opt_string(const json& obj, const char* key,
                                        const std::string& path) const {
    const json* v = optional(obj, key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_string())
      fail(path + "." + key, "expected a string, got " + std::string(v->type_name()));
    return v->get<std::string>();
  }
  bool bool_field(const json& obj, const char* key, const std::string& path, bool def) const {
    const json* v = optional(obj, key);
    if (v == nullptr) return def;
    if (!v->is_boolean())
      fail(path + "." + key, "expected a boolean, got " + std::string(v->type_name()));
    return v->get<bool>();
  }
  std::size_t size_field(const json& obj, const char* key, const std::string& path,
                         std::size_t def) const {
    const json* v = optional(obj, key);
    if (v == nullptr) return def;
    if (!v->is_number_unsigned()) fail(path + "." + key, "expected a non-negative integer");
    return v->get<std::size_t>();
  }
  Token token_id(const json& v, const std::string& path) const {
    if (!v.is_number_integer())
      fail(path, "expected an integer token id, got " + std::string(v.type_name()));
    const auto x = v.get<std::int64_t>();
    if (x < 0 || x > std::numeric_limits<Token>::max())
      fail(path, "token id " + std::to_string(x) + " is out of range");
    return static_cast<Token>(x);
  }
  const json& array_field(const json& obj, const char* key, const std::string& path) const {
    const json& v = field(obj, key, path);
    if (!v.is_array())
      fail(path + "." + key, "expected an array, got " + std::string(v.type_name()));
    return v;
  }
  std::string type_of(const json& obj, const std::string& path) const {
    if (!obj.is_object()) fail(path, "expected a JSON object, got " + std::string(obj.type_name()));
    return string_field(obj, "type", path);
  }

  Regex pattern(const json& obj, const std::string& path) const {
    const json& p = field(obj, "pattern", path);
    const std::string where = origin_ + ": " + path + ".pattern";
    if (p.is_object() && p.contains("String") && p["String"].is_string())
      return Regex::literal(p["String"].get<std::string>(), where);
    if (p.is_object() && p.contains("Regex") && p["Regex"].is_string())
      return Regex(p["Regex"].get<std::string>(), where);
    fail(path + ".pattern", "expected {\"String\": ...} or {\"Regex\": ...}");
  }

  PrependScheme prepend_scheme(const json& obj, const std::string& path) const {
    if (auto s = opt_string(obj, "prepend_scheme", path)) {
      if (*s == "always") return PrependScheme::always;
      if (*s == "first") return PrependScheme::first;
      if (*s == "never") return PrependScheme::never;
      fail(path + ".prepend_scheme",
           "unknown value '" + *s + "' (expected always, first or never)");
    }
    // Files written before prepend_scheme existed carry add_prefix_space.
    return bool_field(obj, "add_prefix_space", path, true) ? PrependScheme::always
                                                           : PrependScheme::never;
  }

  std::unique_ptr<Normalizer> normalizer(const json& n, const std::string& path) const {
    const std::string type = type_of(n, path);
    if (type == "NFC") return make_nfx(0, origin_ + ": " + path);
    if (type == "NFD") return make_nfx(1, origin_ + ": " + path);
    if (type == "NFKC") return make_nfx(2, origin_ + ": " + path);
    if (type == "NFKD") return make_nfx(3, origin_ + ": " + path);
    if (type == "Lowercase") return make_lowercase();
    if (type == "Prepend") return make_prepend(string_field(n, "prepend", path));
    if (type == "Replace")
      return make_replace_normalizer(pattern(n, path), string_field(n, "content", path));
    if (type == "Strip")
      return make_strip_normalizer(bool_field(n, "strip_left", path, true),
                                   bool_field(n, "strip_right", path, true));
    if (type == "Sequence") {
      const json& items = array_field(n, "normalizers", path);
      std::vector<std::unique_ptr<Normalizer>> out;
      for (std::size_t i = 0; i < items.size(); ++i)
        out.push_back(normalizer(items[i], path + ".normalizers[" + std::to_string(i) + "]"));
      return make_normalizer_sequence(std::move(out));
    }
    unsupported(path, "normalizer type '" + type + "'");
  }

  std::unique_ptr<PreTokenizer> pre_tokenizer(const json& p, const std::string& path) const {
    const std::string type = type_of(p, path);
    if (type == "ByteLevel")
      return make_byte_level_pre(bool_field(p, "add_prefix_space", path, true),
                                 bool_field(p, "use_regex", path, true));
    if (type == "Split") {
      const std::string b = string_field(p, "behavior", path);
      SplitBehavior behavior;
      if (b == "Removed")
        behavior = SplitBehavior::removed;
      else if (b == "Isolated")
        behavior = SplitBehavior::isolated;
      else if (b == "MergedWithPrevious")
        behavior = SplitBehavior::merged_with_previous;
      else if (b == "MergedWithNext")
        behavior = SplitBehavior::merged_with_next;
      else if (b == "Contiguous")
        behavior = SplitBehavior::contiguous;
      else
        fail(path + ".behavior", "unknown split behavior '" + b + "'");
      return make_split(pattern(p, path), behavior, bool_field(p, "invert", path, false));
    }
    if (type == "Metaspace") {
      const std::string rep = string_field(p, "replacement", path);
      if (rep.empty()) fail(path + ".replacement", "must not be empty");
      return make_metaspace_pre(rep, prepend_scheme(p, path), bool_field(p, "split", path, true));
    }
    if (type == "Digits") return make_digits(bool_field(p, "individual_digits", path, false));
    if (type == "Sequence") {
      const json& items = array_field(p, "pretokenizers", path);
      std::vector<std::unique_ptr<PreTokenizer>> out;
      for (std::size_t i = 0; i < items.size(); ++i)
        out.push_back(pre_tokenizer(items[i], path + ".pretokenizers[" + std::to_string(i) + "]"));
      return make_pre_sequence(std::move(out));
    }
    unsupported(path, "pre-tokenizer type '" + type + "'");
  }

  std::unique_ptr<Decoder> decoder(const json& d, const std::string& path) const {
    const std::string type = type_of(d, path);
    if (type == "ByteLevel") return make_byte_level_decoder();
    if (type == "Metaspace") {
      // As for the pre-tokenizer: an empty replacement would match between
      // every two characters and put a space there.
      const std::string rep = string_field(d, "replacement", path);
      if (rep.empty()) fail(path + ".replacement", "must not be empty");
      return make_metaspace_decoder(rep, prepend_scheme(d, path));
    }
    if (type == "Replace")
      return make_replace_decoder(pattern(d, path), string_field(d, "content", path));
    if (type == "ByteFallback") return make_byte_fallback_decoder();
    if (type == "Fuse") return make_fuse_decoder();
    if (type == "Strip")
      return make_strip_decoder(string_field(d, "content", path), size_field(d, "start", path, 0),
                                size_field(d, "stop", path, 0));
    if (type == "BPEDecoder")
      return make_bpe_decoder(opt_string(d, "suffix", path).value_or("</w>"));
    if (type == "Sequence") {
      const json& items = array_field(d, "decoders", path);
      std::vector<std::unique_ptr<Decoder>> out;
      for (std::size_t i = 0; i < items.size(); ++i)
        out.push_back(decoder(items[i], path + ".decoders[" + std::to_string(i) + "]"));
      return make_decoder_sequence(std::move(out));
    }
    unsupported(path, "decoder type '" + type + "'");
  }

  // Appends the template's special ids before/after sequence A.
  void post_processor(const json& p, const std::string& path, Tokenizer::Impl& impl) const {
    const std::string type = type_of(p, path);
    if (type == "ByteLevel") return;  // only adjusts offsets, ids are unchanged
    if (type == "Sequence") {
      const json& items = array_field(p, "processors", path);
      for (std::size_t i = 0; i < items.size(); ++i)
        post_processor(items[i], path + ".processors[" + std::to_string(i) + "]", impl);
      return;
    }
    if (type != "TemplateProcessing") unsupported(path, "post-processor type '" + type + "'");
    const json& single = array_field(p, "single", path);
    const json& specials = field(p, "special_tokens", path);
    if (!specials.is_object()) fail(path + ".special_tokens", "expected a JSON object");
    bool seen_a = false;
    for (std::size_t i = 0; i < single.size(); ++i) {
      const std::string ipath = path + ".single[" + std::to_string(i) + "]";
      const json& item = single[i];
      if (item.is_object() && item.contains("Sequence")) {
        const std::string id = string_field(item["Sequence"], "id", ipath + ".Sequence");
        if (id != "A") unsupported(ipath, "sequence '" + id + "' in a single-sequence template");
        if (seen_a) fail(ipath, "sequence A appears twice");
        seen_a = true;
      } else if (item.is_object() && item.contains("SpecialToken")) {
        const std::string name = string_field(item["SpecialToken"], "id", ipath + ".SpecialToken");
        auto it = specials.find(name);
        if (it == specials.end())
          fail(path + ".special_tokens", "no entry for template token '" + name + "'");
        const json& ids = array_field(*it, "ids", path + ".special_tokens." + name);
        for (std::size_t k = 0; k < ids.size(); ++k) {
          const Token id = token_id(
              ids[k], path + ".special_tokens." + name + ".ids[" + std::to_string(k) + "]");
          (seen_a ? impl.post_suffix : impl.post_prefix).push_back(id);
        }
      } else {
        fail(ipath, "expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
      }
    }
    if (!seen_a) fail(path + ".single", "template has no sequence A");
  }

  void model(const json& m, Tokenizer::Impl& impl) const {
    if (!m.is_object()) fail("model", "expected a JSON object, got " + std::string(m.type_name()));
    std::string type = "BPE";
    if (const json* t = optional(m, "type")) {
      if (!t->is_string()) fail("model.type", "expected a string");
      type = t->get<std::string>();
    }
    if (type != "BPE") unsupported("model", "model type '" + type + "' (only BPE is implemented)");
    if (const json* d = optional(m, "dropout")) {
      (void)d;
      unsupported("model.dropout", "BPE dropout (non-deterministic encoding)");
    }
    Bpe& bpe = impl.model;
    const json& vocab = field(m, "vocab", "model");
    if (!vocab.is_object()) fail("model.vocab", "expected a JSON object of token -> id");
    bpe.vocab.reserve(vocab.size());
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      const Token id = token_id(it.value(), "model.vocab[\"" + it.key() + "\"]");
      bpe.vocab.emplace(it.key(), id);
    }
    std::fill(std::begin(bpe.byte_ids), std::end(bpe.byte_ids), -1);
    bpe.byte_fallback = bool_field(m, "byte_fallback", "model", false);
    bpe.fuse_unk = bool_field(m, "fuse_unk", "model", false);
    bpe.ignore_merges = bool_field(m, "ignore_merges", "model", false);
    bpe.continuing_subword_prefix =
        opt_string(m, "continuing_subword_prefix", "model").value_or("");
    bpe.end_of_word_suffix = opt_string(m, "end_of_word_suffix", "model").value_or("");
    if (auto unk = opt_string(m, "unk_token", "model")) {
      auto it = bpe.vocab.find(*unk);
      if (it == bpe.vocab.end())
        fail("model.unk_token", "token '" + *unk + "' is not in the vocabulary");
      bpe.unk_id = it->second;
    }
    if (bpe.byte_fallback) {
      static const char* kHex = "0123456789ABCDEF";
      for (int b = 0; b < 256; ++b) {
        const std::string t = std::string("<0x") + kHex[b >> 4] + kHex[b & 15] + ">";
        if (auto it = bpe.vocab.find(t); it != bpe.vocab.end()) bpe.byte_ids[b] = it->second;
      }
    }

    const json& merges = array_field(m, "merges", "model");
    bpe.merges.reserve(merges.size());
    const std::size_t prefix_len = bpe.continuing_subword_prefix.size();
    for (std::size_t r = 0; r < merges.size(); ++r) {
      const std::string path = "model.merges[" + std::to_string(r) + "]";
      const json& e = merges[r];
      std::string a, b;
      if (e.is_string()) {
        const std::string s = e.get<std::string>();
        const auto sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
          fail(path, "merge '" + s + "' is not two tokens separated by one space");
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
        a = e[0].get<std::string>();
        b = e[1].get<std::string>();
      } else {
        fail(path, "expected \"a b\" or [\"a\", \"b\"]");
      }
      auto ia = bpe.vocab.find(a), ib = bpe.vocab.find(b);
      if (ia == bpe.vocab.end()) fail(path, "token '" + a + "' is not in the vocabulary");
      if (ib == bpe.vocab.end()) fail(path, "token '" + b + "' is not in the vocabulary");
      const std::string merged =
          a + (prefix_len > 0 && b.compare(0, prefix_len, bpe.continuing_subword_prefix) == 0
                   ? b.substr(prefix_len)
                   : b);
      auto im = bpe.vocab.find(merged);
      if (im == bpe.vocab.end())
        fail(path, "merged token '" + merged + "' is not in the vocabulary");
      const std::uint64_t key =
          (static_cast<std::uint64_t>(static_cast<std::uint32_t>(ia->second)) << 32) |
          static_cast<std::uint32_t>(ib->second);
      // The first (lowest-rank) occurrence of a duplicated pair wins.
      bpe.merges.emplace(key, std::make_pair(static_cast<std::int32_t>(r), im->second));
    }
  }

  void added_tokens(const json& root, Tokenizer::Impl& impl) const {
    const json* list = optional(root, "added_tokens");
    if (list == nullptr) return;
    if (!list->is_array()) fail("added_tokens", "expected an array");
    for (std::size_t i = 0; i < list->size(); ++i) {
      const std::string path = "added_tokens[" + std::to_string(i) + "]";
      const json& a = (*list)[i];
      AddedToken t;
      t.id = token_id(field(a, "id", path), path + ".id");
      t.content = string_field(a, "content", path);
      if (t.content.empty()) fail(path + ".content", "must not be empty");
      if (t.content.size() > kMaxAddedTokenBytes)
        fail(path + ".content", "is " + std::to_string(t.content.size()) +
                                    " bytes long, above the limit of " +
                                    std::to_string(kMaxAddedTokenBytes));
      t.special = bool_field(a, "special", path, false);
      t.lstrip = bool_field(a, "lstrip", path, false);
      t.rstrip = bool_field(a, "rstrip", path, false);
      t.single_word = bool_field(a, "single_word", path, false);
      if (auto it = impl.model.vocab.find(t.content);
          it != impl.model.vocab.end() && it->second != t.id)
        fail(path, "token '" + t.content + "' has id " + std::to_string(t.id) +
                       " but the vocabulary gives it id " + std::to_string(it->second));
      if (!impl.added_to_id.emplace(t.content, t.id).second)
        fail(path, "token '" + t.content + "' is listed twice");
      impl.added.push_back(std::move(t));
    }
  }

  // Builds id -> token, rejecting ids used by two different tokens.
  void build_id_table(Tokenizer::Impl& impl) const {
    Token max_id = -1;
    for (const auto& [s, id] : impl.model.vocab) max_id = std::max(max_id, id);
    for (const auto& a : impl.added) max_id = std::max(max_id, a.id);
    const std::size_t entries = impl.model.vocab.size() + impl.added.size();
    // Sparse vocabularies exist, but an id far beyond the number of entries
    // is a corrupt file (and would make the table huge).
    if (max_id >= 0 && static_cast<std::size_t>(max_id) >= 4 * entries + 1024)
      fail("model.vocab", "token id " + std::to_string(max_id) + " is out of range for " +
                              std::to_string(entries) + " entries");
    const std::size_t n = static_cast<std::size_t>(max_id + 1);
    impl.id_to_token.assign(n, {});
    impl.present.assign(n, 0);
    impl.special.assign(n, 0);
    for (const auto& [s, id] : impl.model.vocab) {
      if (impl.present[id])
        fail("model.vocab", "id " + std::to_string(id) + " is used by both '" +
                                impl.id_to_token[id] + "' and '" + s + "'");
      impl.present[id] = 1;
      impl.id_to_token[id] = s;
    }
    for (const auto& a : impl.added) {
      if (impl.present[a.id] && impl.id_to_token[a.id] != a.content)
        fail("added_tokens", "id " + std::to_string(a.id) + " is used by both '" +
                                 impl.id_to_token[a.id] + "' and '" + a.content + "'");
      impl.present[a.id] = 1;
      impl.id_to_token[a.id] = a.content;
      impl.special[a.id] = a.special ? 1 : 0;
    }
    for (std::size_t i = 0; i < impl.added.size(); ++i)
      impl.added_trie.insert(impl.added[i].content, static_cast<std::int32_t>(i));
    impl.added_trie.finish();
  }

  void check_id(const Tokenizer::Impl& impl, Token id, const std::string& path) const {
    if (id < 0 || static_cast<std::size_t>(id) >= impl.present.size() || !impl.present[id])
      fail(path, "token id " + std::to_string(id) + " is not in the vocabulary");
  }

  const std::string& origin() const { return origin_; }

 private:
  std::string origin_;
};

// Every tokenizer file goes through the library's one JSON parser: duplicate
// keys and nesting deeper than io::detail::kMaxJsonDepth are errors, so the
// recursive component readers above (Sequence inside Sequence) stay shallow.
json parse_json(std::string_view text, const std::string& origin) {
  return io::detail::parse_strict_json<FormatError>(text, origin);
}

// bos_token / eos_token in tokenizer_config.json: a string or {"content": ...}.
std::optional<std::string> special_token_name(const json& cfg, const char* key,
                                              const std::string& origin) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  throw FormatError(origin + ": " + key + ": expected a string or {\"content\": ...}");
}

}  // namespace

Tokenizer Tokenizer::from_json(std::string_view tokenizer_json,
                               std::string_view tokenizer_config_json,
                               std::string_view generation_config_json, std::string_view origin) {
  auto impl = std::make_shared<Impl>();
  impl->origin = std::string(origin);
  Parser p(impl->origin);
  const json root = parse_json(tokenizer_json, impl->origin);
  if (!root.is_object())
    p.fail("(top level)", "expected a JSON object, got " + std::string(root.type_name()));

  try {
    p.model(p.field(root, "model", "(top level)"), *impl);
    p.added_tokens(root, *impl);
    p.build_id_table(*impl);
    if (const json* n = p.optional(root, "normalizer"))
      impl->normalizer = p.normalizer(*n, "normalizer");
    if (const json* t = p.optional(root, "pre_tokenizer"))
      impl->pre_tokenizer = p.pre_tokenizer(*t, "pre_tokenizer");
    if (const json* d = p.optional(root, "decoder")) {
      impl->decoder = p.decoder(*d, "decoder");
      bool joined = false, local = true;
      impl->decoder->stream_check(joined, local);
      impl->stream_whole = !local;
    }
    if (const json* pp = p.optional(root, "post_processor"))
      p.post_processor(*pp, "post_processor", *impl);
    for (std::size_t i = 0; i < impl->post_prefix.size(); ++i)
      p.check_id(*impl, impl->post_prefix[i], "post_processor");
    for (std::size_t i = 0; i < impl->post_suffix.size(); ++i)
      p.check_id(*impl, impl->post_suffix[i], "post_processor");
  } catch (const json::exception& e) {
    // Field access is type-checked above; this only guards the unexpected.
    throw FormatError(impl->origin + ": malformed tokenizer: " + e.what());
  }

  auto lookup = [&](const std::string& name, const std::string& where) -> Token {
    auto it = impl->added_to_id.find(name);
    if (it != impl->added_to_id.end()) return it->second;
    auto jt = impl->model.vocab.find(name);
    if (jt != impl->model.vocab.end()) return jt->second;
    throw FormatError(where + ": token '" + name + "' is not in the vocabulary");
  };

  std::optional<bool> add_bos, add_eos;
  if (!tokenizer_config_json.empty()) {
    const std::string corigin = impl->origin + " (tokenizer_config.json)";
    const json cfg = parse_json(tokenizer_config_json, corigin);
    if (!cfg.is_object()) throw FormatError(corigin + ": expected a JSON object");
    if (auto b = special_token_name(cfg, "bos_token", corigin))
      impl->bos = lookup(*b, corigin + ": bos_token");
    if (auto e = special_token_name(cfg, "eos_token", corigin))
      impl->eos.push_back(lookup(*e, corigin + ": eos_token"));
    for (const char* key : {"add_bos_token", "add_eos_token"}) {
      auto it = cfg.find(key);
      if (it == cfg.end() || it->is_null()) continue;
      if (!it->is_boolean()) throw FormatError(corigin + ": " + key + ": expected a boolean");
      (std::string(key) == "add_bos_token" ? add_bos : add_eos) = it->get<bool>();
    }
  }
  if (!generation_config_json.empty()) {
    const std::string gorigin = impl->origin + " (generation_config.json)";
    const json gen = parse_json(generation_config_json, gorigin);
    if (!gen.is_object()) throw FormatError(gorigin + ": expected a JSON object");
    Parser gp(gorigin);
    if (const json* b = gp.optional(gen, "bos_token_id"); b != nullptr && !impl->bos) {
      impl->bos = gp.token_id(*b, "bos_token_id");
      gp.check_id(*impl, *impl->bos, "bos_token_id");
    }
    if (const json* e = gp.optional(gen, "eos_token_id")) {
      std::vector<Token> ids;
      if (e->is_array()) {
        for (std::size_t i = 0; i < e->size(); ++i)
          ids.push_back(gp.token_id((*e)[i], "eos_token_id[" + std::to_string(i) + "]"));
      } else {
        ids.push_back(gp.token_id(*e, "eos_token_id"));
      }
      for (Token id : ids) {
        gp.check_id(*impl, id, "eos_token_id");
        if (std::find(impl->eos.begin(), impl->eos.end(), id) == impl->eos.end())
          impl->eos.push_back(id);
      }
    }
  }

  // transformers' Llama-style fast tokenizers rebuild the template from
  // add_bos_token / add_eos_token when tokenizer_config.json sets them.
  if (add_bos) {
    auto& pre = impl->post_prefix;
    const bool has = impl->bos && !pre.empty() && pre.front() == *impl->bos;
    if (*add_bos && !has) {
      if (!impl->bos)
        throw ConfigError(impl->origin + ": add_bos_token is true but no bos_token is defined");
      pre.insert(pre.begin(), *impl->bos);
    } else if (!*add_bos && has) {
      pre.erase(pre.begin());
    }
  }
  if (add_eos) {
    auto& suf = impl->post_suffix;
    const bool has = !impl->eos.empty() && !suf.empty() && suf.back() == impl->eos.front();
    if (*add_eos && !has) {
      if (impl->eos.empty())
        throw ConfigError(impl->origin + ": add_eos_token is true but no eos_token is defined");
      suf.push_back(impl->eos.front());
    } else if (!*add_eos && has) {
      suf.pop_back();
    }
  }
  return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::load(const std::filesystem::path& dir_or_file) {
  using io::detail::read_bounded_file;
  std::error_code ec;
  std::filesystem::path file = dir_or_file;
  if (std::filesystem::is_directory(dir_or_file, ec)) file = dir_or_file / "tokenizer.json";
  // A GGUF model file: the tokenizer in its metadata (gguf_vocab.hpp), else
  // the tokenizer.json next to it.
  else if (io::is_gguf_path(dir_or_file)) {
    const io::GgufFile g(dir_or_file);
    if (tok::gguf_has_tokenizer(g)) {
      const tok::GgufTokenizerJson j = tok::gguf_tokenizer_json(g);
      return from_json(j.tokenizer_json, j.tokenizer_config_json, {}, dir_or_file.string());
    }
    file = (dir_or_file.has_parent_path() ? dir_or_file.parent_path() : std::filesystem::path(".")) /
           "tokenizer.json";
  }
  // Bounded reads: a FIFO, a device or a directory in place of a file is an
  // IoError, an oversized file a FormatError (io/json_file.hpp).
  const std::string text = read_bounded_file(file, io::detail::kMaxTokenizerJsonBytes);
  const auto dir = file.parent_path();
  std::string cfg, gen;
  if (io::detail::path_exists(dir / "tokenizer_config.json"))
    cfg = read_bounded_file(dir / "tokenizer_config.json", io::detail::kMaxTokenizerConfigBytes);
  if (io::detail::path_exists(dir / "generation_config.json"))
    gen = read_bounded_file(dir / "generation_config.json", io::detail::kMaxConfigJsonBytes);
  return from_json(text, cfg, gen, file.string());
}

}  // namespace assistgen
